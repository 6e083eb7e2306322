import Foundation
import XCTest

@testable import GoogleAuth

/// Base64URL against Foundation's base64 (another implementation), for every length up to 70
/// and random contents, and the canonical form JWS requires.
final class Base64URLTests: XCTestCase {
  func foundation(_ bytes: [UInt8]) -> String {
    var text = Data(bytes).base64EncodedString()
    while text.hasSuffix("=") { text.removeLast() }
    return text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
  }

  func testAgreesWithFoundationAndRoundTrips() {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    for length in 0...70 {
      for _ in 0..<20 {
        let bytes = (0..<length).map { _ -> UInt8 in
          state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
          return UInt8(truncatingIfNeeded: state >> 33)
        }
        let text = Base64URL.encode(bytes)
        XCTAssertEqual(text, foundation(bytes))
        XCTAssertEqual(Base64URL.decodeCanonical(text), bytes)
        XCTAssertEqual(Base64URL.decode(text), bytes)
        // Padded: the lenient decoder takes it, the canonical one does not.
        let padded = text + String(repeating: "=", count: (4 - text.count % 4) % 4)
        XCTAssertEqual(Base64URL.decode(padded), bytes)
        if padded != text { XCTAssertNil(Base64URL.decodeCanonical(padded)) }
      }
    }
  }

  func testOnlyOneSpellingIsCanonical() {
    // "QQ" is "A"; "QR" has non-zero spare bits: it decodes leniently but is not canonical.
    XCTAssertEqual(Base64URL.decodeCanonical("QQ"), [0x41])
    XCTAssertNil(Base64URL.decodeCanonical("QR"))
    XCTAssertEqual(Base64URL.decode("QR"), [0x41])
    XCTAssertNil(Base64URL.decodeCanonical("QUI"[...].dropLast() + "J"))  // "QUJ": spare bits
    XCTAssertNil(Base64URL.decode("Q"))  // one character cannot carry a byte
    XCTAssertNil(Base64URL.decode("QQ+/"))  // standard alphabet
    XCTAssertNil(Base64URL.decode("QQ é"))
    XCTAssertEqual(Base64URL.decode(""), [])
    XCTAssertEqual(Base64URL.decodeCanonical(""), [])
  }
}
