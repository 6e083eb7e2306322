import HTTP1
import XCTest

@testable import CredproxyCore

final class HeaderPolicyTests: XCTestCase {
  func fields(_ pairs: [(String, String)]) -> [HeaderField] {
    pairs.map { HeaderField(name: $0.0, value: $0.1) }
  }

  func testHopByHopAndFramingNeverGoUpstream() {
    let lines = HeaderPolicy.upstreamLines(
      fields([
        ("Connection", "keep-alive, X-Secret-Hop"), ("Keep-Alive", "5"), ("Proxy-Connection", "x"),
        ("Proxy-Authorization", "Basic abc"), ("TE", "trailers"), ("Trailer", "x"),
        ("Upgrade", "h2c"),
        ("Transfer-Encoding", "chunked"), ("Content-Length", "5"), ("Host", "h"),
        ("Expect", "100-continue"),
        ("X-Secret-Hop", "1"), ("Accept", "*/*"), ("X-Kept", "v"),
      ]), replacing: nil)
    XCTAssertEqual(lines, ["Accept: */*", "X-Kept: v"])
  }

  func testCurlDefaultAcceptIsSuppressedWhenTheCallerSentNone() {
    XCTAssertEqual(
      HeaderPolicy.upstreamLines(fields([("X-A", "1")]), replacing: nil), ["X-A: 1", "Accept:"])
  }

  func testEmptyValueUsesCurlsSemicolonSpelling() {
    XCTAssertEqual(HeaderPolicy.curlLine("X-Empty", ""), "X-Empty;")
    XCTAssertEqual(HeaderPolicy.curlLine("X-A", "b"), "X-A: b")
  }

  func testInjectedHeaderReplacesEveryCallerSpelling() {
    let lines = HeaderPolicy.upstreamLines(
      fields([
        ("X-Api-Key", "a"), ("x_api_key", "b"), ("X_API-KEY", "c"), ("X-Api-Keys", "d"),
        ("XApiKey", "e"),
        ("Accept", "x"),
      ]), replacing: "x-api-key")
    XCTAssertEqual(lines, ["X-Api-Keys: d", "XApiKey: e", "Accept: x"])
  }

  func testAuthorizationIsReplacedNotMerged() {
    let lines = HeaderPolicy.upstreamLines(
      fields([("Authorization", "Bearer caller"), ("authorization", "x"), ("Accept", "a")]),
      replacing: "authorization")
    XCTAssertEqual(lines, ["Accept: a"])
  }

  func testResponseDropsHopByHopAndFramingButKeepsTheRest() {
    let kept = HeaderPolicy.clientHeaders(
      fields([
        ("Connection", "X-Hop, content-length"), ("X-Hop", "1"), ("Content-Length", "5"),
        ("Transfer-Encoding", "chunked"), ("Keep-Alive", "x"), ("Proxy-Authenticate", "Basic"),
        ("Upgrade", "x"), ("Set-Cookie", "a=b"), ("Content-Type", "text/plain"),
      ]))
    XCTAssertEqual(kept.map(\.name), ["Set-Cookie", "Content-Type"])
  }

  func testSpellsSameFieldFoldsOnlyCaseAndUnderscore() {
    XCTAssertTrue(HeaderPolicy.spellsSameField("X_API_key", "x-api-key"))
    XCTAssertFalse(HeaderPolicy.spellsSameField("X.Api.Key", "x-api-key"))
    XCTAssertFalse(HeaderPolicy.spellsSameField("X-Api-Key2", "x-api-key"))
  }
}
