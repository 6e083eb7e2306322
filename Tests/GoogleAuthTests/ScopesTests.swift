import XCTest

@testable import GoogleAuth

final class ScopesTests: XCTestCase {
  let a = "https://www.googleapis.com/auth/cloud-platform"
  let b = "https://www.googleapis.com/auth/devstorage.read_only"

  func testSpellingsNormaliseIdentically() {
    let expected = [a, b]
    XCTAssertEqual(Scopes.normalize("\(a) \(b)"), expected)
    XCTAssertEqual(Scopes.normalize("\(b) \(a)"), expected)
    XCTAssertEqual(Scopes.normalize("\(b),\(a)"), expected)
    XCTAssertEqual(Scopes.normalize(" \(b) ,  \(a),,"), expected)
    XCTAssertEqual(Scopes.normalize([a, b]), expected)
    XCTAssertEqual(Scopes.normalize([b, a]), expected)
    XCTAssertEqual(Scopes.normalize([b, "\(a) \(b)", a]), expected)
    XCTAssertEqual(Scopes.normalize(["\(b)\t\(a)\n"]), expected)
    XCTAssertEqual(Scopes.cacheKey([b, a]), "\(a) \(b)")
    XCTAssertEqual(Scopes.cacheKey(["\(a),\(b)"]), Scopes.cacheKey(["\(b) \(a)"]))
  }

  func testEmptyDefaultsToCloudPlatform() {
    XCTAssertEqual(Scopes.normalize([]), [Scopes.cloudPlatform])
    XCTAssertEqual(Scopes.normalize(""), [Scopes.cloudPlatform])
    XCTAssertEqual(Scopes.normalize([" , "]), [Scopes.cloudPlatform])
    XCTAssertEqual(Scopes.cloudPlatform, a)
  }
}
