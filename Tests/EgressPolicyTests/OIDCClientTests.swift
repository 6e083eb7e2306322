import CredproxyConfig
import EgressPolicy
import Foundation
import XCTest

/// Which client a verified OIDC token identifies (the signature is CredproxyCore's part).
final class OIDCClientTests: XCTestCase {
  let issuer = "https://token.actions.githubusercontent.com"

  func identifier() throws -> ClientIdentifier {
    let c = try ConfigParser.parse(
      text: """
        client deploy {
          oidc issuer \(issuer) audience credproxy claim repository myorg/deploy claim ref refs/heads/main
        }
        client any-branch {
          oidc issuer \(issuer) audience credproxy claim repository myorg/deploy
        }
        client flagged {
          oidc issuer \(issuer) audience other claim protected true claim run_attempt 2
        }
        client ci {
          token env:CI_TOKEN
        }
        """, path: "proxy.conf")
    return ClientIdentifier(config: c, environment: ["CI_TOKEN": "a.b.c"])
  }

  func claims(_ extra: [String: Any] = [:], now: Double = 1_000_000) -> [String: Any] {
    var c: [String: Any] = [
      "iss": issuer, "aud": "credproxy", "exp": now + 300, "nbf": now - 5,
      "repository": "myorg/deploy", "ref": "refs/heads/main",
    ]
    c.merge(extra) { $1 }
    return c
  }

  func testFirstMatchingClientInFileOrderWithItsClaims() throws {
    let ids = try identifier()
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(), now: 1_000_000),
      .client("deploy", claims: ["repository=myorg/deploy", "ref=refs/heads/main"]))
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["ref": "refs/heads/dev"]), now: 1_000_000),
      .client("any-branch", claims: ["repository=myorg/deploy"]))
    guard
      case .rejected(let why) = ids.matchOIDC(
        issuer: issuer, claims: claims(["repository": "myorg/deploy2"]), now: 1_000_000)
    else { return XCTFail() }
    XCTAssertTrue(why.contains("\"repository\""), why)
    XCTAssertFalse(why.contains("myorg"), why)
  }

  func testTimeWithSixtySecondsOfSkew() throws {
    let ids = try identifier()
    let now = 1_000_000.0
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["exp": now - 59]), now: now),
      .client("deploy", claims: ["repository=myorg/deploy", "ref=refs/heads/main"]))
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["exp": now - 61]), now: now),
      .rejected("OIDC proxy token expired"))
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["nbf": now + 61]), now: now),
      .rejected("OIDC proxy token not yet valid (nbf)"))
    var noExp = claims()
    noExp["exp"] = nil
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: noExp, now: now),
      .rejected("OIDC proxy token has no exp claim"))
    // A string or boolean is not a time.
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["exp": "9999999999"]), now: now),
      .rejected("OIDC proxy token has no exp claim"))
  }

  func testAudienceStringOrList() throws {
    let ids = try identifier()
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(["aud": ["x", "credproxy"]]), now: 1_000_000),
      .client("deploy", claims: ["repository=myorg/deploy", "ref=refs/heads/main"]))
    guard
      case .rejected(let why) = ids.matchOIDC(
        issuer: issuer, claims: claims(["aud": "credproxy-other"]), now: 1_000_000)
    else { return XCTFail() }
    XCTAssertTrue(why.contains("audience"), why)
    guard
      case .rejected = ids.matchOIDC(
        issuer: "https://other.example.com", claims: claims(), now: 1_000_000)
    else { return XCTFail() }
  }

  func testBooleanAndNumberClaimsCompareAsWritten() throws {
    let ids = try identifier()
    let json = #"{"aud":"other","exp":2000000,"protected":true,"run_attempt":2}"#
    let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: parsed, now: 1_000_000),
      .client("flagged", claims: ["protected=true", "run_attempt=2"]))
    let strings = #"{"aud":"other","exp":2000000,"protected":"yes","run_attempt":2}"#
    let other = try JSONSerialization.jsonObject(with: Data(strings.utf8)) as! [String: Any]
    guard case .rejected = ids.matchOIDC(issuer: issuer, claims: other, now: 1_000_000) else {
      return XCTFail()
    }
  }

  func testBearerJWTsGoToVerificationOnlyWhenNoStaticTokenMatches() throws {
    let ids = try identifier()
    XCTAssertEqual(ids.oidcIssuers, [issuer])
    // The static token wins, even though it is JWT-shaped.
    XCTAssertEqual(
      ids.identify(proxyAuthorization: "Bearer a.b.c", peer: IPAddress("127.0.0.1")!),
      .client("ci"))
    XCTAssertEqual(
      ids.identify(proxyAuthorization: "Bearer x.y.z", peer: IPAddress("127.0.0.1")!),
      .verifyToken("x.y.z", only: nil))
    // Basic NAME:JWT (a proxy URL's user and password) names the client the token must match.
    let basic = "Basic " + Data("deploy:x.y.z".utf8).base64EncodedString()
    XCTAssertEqual(
      ids.identify(proxyAuthorization: basic, peer: IPAddress("127.0.0.1")!),
      .verifyToken("x.y.z", only: "deploy"))
    XCTAssertEqual(
      ids.matchOIDC(
        issuer: issuer, claims: claims(["ref": "refs/heads/dev"]), now: 1_000_000, only: "deploy"),
      .rejected(
        "OIDC proxy token from \(issuer) matches no client (claim \"ref\" differs)"))
    XCTAssertEqual(
      ids.matchOIDC(issuer: issuer, claims: claims(), now: 1_000_000, only: "any-branch"),
      .client("any-branch", claims: ["repository=myorg/deploy"]))
    XCTAssertEqual(
      ids.identify(proxyAuthorization: "Bearer xyz", peer: IPAddress("127.0.0.1")!),
      .rejected("Bearer proxy token not accepted"))
    // Without OIDC clients a JWT is just a wrong token.
    let plain = ClientIdentifier(
      clients: [ClientSpec(name: "ci", token: .literal("t"), line: 1)], environment: [:])
    XCTAssertEqual(
      plain.identify(proxyAuthorization: "Bearer x.y.z", peer: IPAddress("127.0.0.1")!),
      .rejected("Bearer proxy token not accepted"))
  }
}
