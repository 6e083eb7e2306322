import Foundation
import XCTest

@testable import Wire

/// The one base64 decoder, against Foundation's (another implementation) for the standard
/// alphabet, and each padding mode's edges.
final class Base64Tests: XCTestCase {
  func decode(_ s: String, _ padding: Base64.Padding, url: Bool = false, canonical: Bool = true)
    -> [UInt8]?
  {
    Base64.decode(
      Array(s.utf8), alphabet: url ? .url : .standard, padding: padding, canonicalBits: canonical)
  }

  func testAgreesWithFoundation() {
    var state: UInt64 = 0x2545_F491_4F6C_DD1D
    for length in 0...50 {
      for _ in 0..<10 {
        let bytes = (0..<length).map { _ -> UInt8 in
          state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
          return UInt8(truncatingIfNeeded: state >> 33)
        }
        let padded = Data(bytes).base64EncodedString()
        XCTAssertEqual(decode(padded, .optional), bytes)
        let bare = String(padded.prefix { $0 != "=" })
        XCTAssertEqual(decode(bare, .optional), bytes)
        XCTAssertEqual(decode(bare, .forbidden), bytes)
        if bare != padded { XCTAssertNil(decode(padded, .forbidden)) }
        let url = bare.replacingOccurrences(of: "+", with: "-").replacingOccurrences(
          of: "/", with: "_")
        XCTAssertEqual(decode(url, .forbidden, url: true), bytes)
      }
    }
  }

  func testPaddingModes() {
    XCTAssertEqual(decode("QQ==", .optional), [0x41])
    XCTAssertNil(decode("QQ=", .optional), "padding must complete the quantum")
    XCTAssertNil(decode("QQ===", .optional))
    XCTAssertNil(decode("QQ==QQ==", .optional), "data after padding")
    XCTAssertEqual(decode("Q=Q", .ignored, canonical: false), [0x41])
    XCTAssertNil(decode("Q", .ignored, canonical: false), "one character carries no byte")
    XCTAssertNil(decode("QR", .optional), "spare bits must be zero")
    XCTAssertEqual(decode("QR", .ignored, canonical: false), [0x41])
    XCTAssertNil(decode("a-b_", .optional), "url alphabet in a standard decode")
    XCTAssertNil(decode("a+b/", .forbidden, url: true), "standard alphabet in a url decode")
    XCTAssertEqual(decode("", .forbidden), [])
  }
}
