import GoogleAuth
import XCTest

@testable import CredproxyCore

/// The per-loop memory of verified OIDC proxy tokens: what it keeps, for how long, and that it
/// never outlives the issuer key set a token was verified with.
final class VerifiedTokensTests: XCTestCase {
  func signed(_ claims: String) throws -> (String, SignedToken) {
    let header = Base64URL.encode(Array(#"{"alg":"RS256","kid":"k"}"#.utf8))
    let token = "\(header).\(Base64URL.encode(Array(claims.utf8))).AAAA"
    return (token, try SignedToken.parse(token))
  }

  func testKeptWhileTheIssuersKeySetIsTheSame() throws {
    let cache = VerifiedTokens()
    let (text, token) = try signed(#"{"iss":"https://issuer.test","exp":2000}"#)
    let digest = VerifiedTokens.digest(text)
    XCTAssertNil(cache.verified(digest, now: 1000, keys: { _ in 1 }))
    cache.remember(digest, token, issuer: "https://issuer.test", keys: 1, exp: 2000, now: 1000)
    XCTAssertEqual(
      cache.verified(digest, now: 1001, keys: { _ in 1 })?.issuer, "https://issuer.test")
    // The issuer's keys were fetched again: the token must be verified against them.
    XCTAssertNil(cache.verified(digest, now: 1002, keys: { _ in 2 }))
    XCTAssertEqual(cache.count, 0)
    // Another token is another entry.
    XCTAssertNil(cache.verified(VerifiedTokens.digest(text + "x"), now: 1002, keys: { _ in 1 }))
  }

  func testForgottenAfterMaxAgeOrItsOwnExpiry() throws {
    let cache = VerifiedTokens()
    let (text, token) = try signed(#"{"iss":"i","exp":1100}"#)
    let digest = VerifiedTokens.digest(text)
    cache.remember(digest, token, issuer: "i", keys: 1, exp: 1100, now: 1000)
    XCTAssertNotNil(cache.verified(digest, now: 1159, keys: { _ in 1 }))
    XCTAssertNil(cache.verified(digest, now: 1160, keys: { _ in 1 }), "kept past exp + skew")
    cache.remember(digest, token, issuer: "i", keys: 1, exp: nil, now: 1000)
    XCTAssertNotNil(cache.verified(digest, now: 1000 + VerifiedTokens.maxAge - 1, keys: { _ in 1 }))
    XCTAssertNil(cache.verified(digest, now: 1000 + VerifiedTokens.maxAge, keys: { _ in 1 }))
  }

  func testMemoryIsBounded() throws {
    let cache = VerifiedTokens(capacity: 8)
    for i in 0..<100 {
      let (text, token) = try signed(#"{"iss":"i","n":\#(i)}"#)
      cache.remember(VerifiedTokens.digest(text), token, issuer: "i", keys: 1, exp: nil, now: 1000)
      XCTAssertLessThanOrEqual(cache.count, 8)
    }
  }
}
