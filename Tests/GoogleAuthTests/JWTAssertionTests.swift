import Foundation
import XCTest

@testable import GoogleAuth

final class JWTAssertionTests: XCTestCase {
  let fixture = OpenSSLFixture.shared

  func makeKey(keyID: String = "kid-123", tokenURI: String = defaultTokenURI) throws
    -> ServiceAccountSigner
  {
    try ServiceAccountSigner(
      ServiceAccountKey(
        clientEmail: "robot@project.iam.gserviceaccount.com", privateKeyPEM: fixture.pkcs8PEM,
        privateKeyID: keyID, tokenURI: tokenURI))
  }

  func segments(_ jwt: String) throws -> (header: [String: Any], claims: [String: Any], [String]) {
    let parts = jwt.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    XCTAssertEqual(parts.count, 3)
    for part in parts {
      XCTAssertFalse(part.contains("="), "padded segment")
      XCTAssertFalse(part.contains("+") || part.contains("/"), "not base64url")
    }
    let header = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(XCTUnwrap(Base64URL.decode(parts[0]))))
        as? [String: Any])
    let claims = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(XCTUnwrap(Base64URL.decode(parts[1]))))
        as? [String: Any])
    return (header, claims, parts)
  }

  func testAccessTokenAssertion() throws {
    let key = try makeKey()
    let jwt = try JWTAssertion.accessToken(
      key: key,
      scopes: ["https://www.googleapis.com/auth/cloud-platform", "openid"],
      now: 1_700_000_000.7)
    let (header, claims, parts) = try segments(jwt)
    XCTAssertEqual(header as NSDictionary, ["alg": "RS256", "typ": "JWT", "kid": "kid-123"])
    XCTAssertEqual(
      String(decoding: Base64URL.decode(parts[0])!, as: UTF8.self),
      #"{"alg":"RS256","typ":"JWT","kid":"kid-123"}"#)
    XCTAssertEqual(claims["iss"] as? String, "robot@project.iam.gserviceaccount.com")
    XCTAssertEqual(
      claims["scope"] as? String, "https://www.googleapis.com/auth/cloud-platform openid")
    XCTAssertEqual(claims["aud"] as? String, "https://oauth2.googleapis.com/token")
    XCTAssertEqual((claims["iat"] as? NSNumber)?.intValue, 1_700_000_000)
    XCTAssertEqual((claims["exp"] as? NSNumber)?.intValue, 1_700_003_600)
    XCTAssertNil(claims["target_audience"])
    XCTAssertEqual(claims.count, 5)
    XCTAssertEqual(
      String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self),
      #"{"iss":"robot@project.iam.gserviceaccount.com","scope":"https://www.googleapis.com/auth/cloud-platform openid","aud":"https://oauth2.googleapis.com/token","iat":1700000000,"exp":1700003600}"#
    )

    let signature = try XCTUnwrap(Base64URL.decode(parts[2]))
    let signingInput = Array("\(parts[0]).\(parts[1])".utf8)
    XCTAssertTrue(try fixture.opensslVerifies(signingInput, signature: signature))
    XCTAssertEqual(signature, try fixture.opensslSignature(signingInput))
  }

  func testIDTokenAssertion() throws {
    let key = try makeKey(tokenURI: "https://oauth2.example.test/token")
    let jwt = try JWTAssertion.idToken(
      key: key, targetAudience: "https://svc-abc.a.run.app", now: 1_800_000_000)
    let (_, claims, parts) = try segments(jwt)
    XCTAssertEqual(claims["target_audience"] as? String, "https://svc-abc.a.run.app")
    XCTAssertNil(claims["scope"])
    XCTAssertEqual(claims["aud"] as? String, "https://oauth2.example.test/token")
    XCTAssertEqual((claims["exp"] as? NSNumber)?.intValue, 1_800_003_600)
    let signature = try XCTUnwrap(Base64URL.decode(parts[2]))
    XCTAssertTrue(
      try fixture.opensslVerifies(Array("\(parts[0]).\(parts[1])".utf8), signature: signature))
  }

  func testExplicitAudienceAndNoKeyID() throws {
    let key = try makeKey(keyID: "")
    let jwt = try JWTAssertion.accessToken(
      key: key, scopes: ["a"], audience: "https://aud.example", now: 10)
    let (header, claims, _) = try segments(jwt)
    XCTAssertNil(header["kid"])
    XCTAssertEqual(claims["aud"] as? String, "https://aud.example")
  }

  func testJWTExpiryDecoding() {
    let payload = Base64URL.encode(Array(#"{"exp":1900000000,"aud":"x"}"#.utf8))
    XCTAssertEqual(JWT.expiry(of: "eyJhbGciOiJSUzI1NiJ9.\(payload).c2ln"), 1_900_000_000)
    XCTAssertNil(JWT.expiry(of: "not-a-jwt"))
    XCTAssertNil(JWT.expiry(of: "a.b"))
    XCTAssertNil(JWT.expiry(of: "a.!!!.c"))
    let noExp = Base64URL.encode(Array(#"{"aud":"x"}"#.utf8))
    XCTAssertNil(JWT.expiry(of: "a.\(noExp).c"))
    let stringExp = Base64URL.encode(Array(#"{"exp":"1900000000"}"#.utf8))
    XCTAssertNil(JWT.expiry(of: "a.\(stringExp).c"))
  }

  func testServiceAccountSignerErrorNamesTheAccountNotTheKey() {
    let key = ServiceAccountKey(
      clientEmail: "robot@p.iam.gserviceaccount.com",
      privateKeyPEM: "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n",
      privateKeyID: "k")
    XCTAssertThrowsError(try ServiceAccountSigner(key)) { error in
      XCTAssertTrue("\(error)".contains("robot@p.iam.gserviceaccount.com"))
      XCTAssertFalse("\(error)".contains("SECRETSECRET"))
    }
  }
}

/// Builds an unsigned JWT with the given claims JSON, for response-parsing tests.
func fakeJWT(_ claims: String) -> String {
  Base64URL.encode(Array(#"{"alg":"RS256","typ":"JWT"}"#.utf8)) + "."
    + Base64URL.encode(Array(claims.utf8)) + "." + Base64URL.encode([1, 2, 3])
}
