import Foundation
import XCTest

@testable import GoogleAuth

final class RequestTests: XCTestCase {
  func json(_ request: HTTPRequestSpec) throws -> [String: Any] {
    try XCTUnwrap(JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
  }

  func testFormEscaping() {
    XCTAssertEqual(FormURLEncoding.escape("AZaz09-._~"), "AZaz09-._~")
    XCTAssertEqual(FormURLEncoding.escape("a b&c=d+e/f:g"), "a+b%26c%3Dd%2Be%2Ff%3Ag")
    XCTAssertEqual(FormURLEncoding.escape("é%"), "%C3%A9%25")
    XCTAssertEqual(FormURLEncoding.queryComponent("a b"), "a%20b")
    XCTAssertEqual(FormURLEncoding.encode([("a", "1"), ("b c", "2 3")]), "a=1&b+c=2+3")
  }

  func testJWTBearerGrant() {
    let request = TokenRequests.jwtBearerGrant(
      tokenURI: "https://oauth2.googleapis.com/token", assertion: "aaa.bbb.c-_")
    XCTAssertEqual(request.method, "POST")
    XCTAssertEqual(request.url, "https://oauth2.googleapis.com/token")
    XCTAssertEqual(request.header("content-type"), "application/x-www-form-urlencoded")
    XCTAssertEqual(
      request.bodyText,
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.c-_")
    XCTAssertFalse(request.description.contains("aaa.bbb"))
  }

  func testRefreshTokenGrant() {
    let user = AuthorizedUser(
      clientID: "123-abc.apps.googleusercontent.com", clientSecret: "s3cr/t+=",
      refreshToken: "1//0g-x_y", tokenURI: "http://127.0.0.1:1/token")
    let request = TokenRequests.refreshTokenGrant(user)
    XCTAssertEqual(request.url, "http://127.0.0.1:1/token")
    XCTAssertEqual(
      request.bodyText,
      "grant_type=refresh_token&client_id=123-abc.apps.googleusercontent.com"
        + "&client_secret=s3cr%2Ft%2B%3D&refresh_token=1%2F%2F0g-x_y")
    let scoped = TokenRequests.refreshTokenGrant(
      user, scopes: ["https://www.googleapis.com/auth/cloud-platform", "openid"])
    XCTAssertTrue(
      scoped.bodyText.hasSuffix(
        "&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform+openid"),
      scoped.bodyText)
  }

  func testClientCredentialsGrant() throws {
    let request = TokenRequests.clientCredentialsGrant(
      tokenURI: "https://idp.example/token", clientID: "my client", clientSecret: "p:w&d",
      scopes: ["read", "write"])
    XCTAssertEqual(request.method, "POST")
    XCTAssertEqual(request.bodyText, "grant_type=client_credentials&scope=read+write")
    let authorization = try XCTUnwrap(request.header("Authorization"))
    XCTAssertTrue(authorization.hasPrefix("Basic "))
    let decoded = try XCTUnwrap(Data(base64Encoded: String(authorization.dropFirst(6))))
    XCTAssertEqual(String(decoding: decoded, as: UTF8.self), "my+client:p%3Aw%26d")
    let noScope = TokenRequests.clientCredentialsGrant(
      tokenURI: "https://idp.example/token", clientID: "c", clientSecret: "s")
    XCTAssertEqual(noScope.bodyText, "grant_type=client_credentials")
    XCTAssertFalse(noScope.description.contains("Basic"))
  }

  func testMetadataRequests() {
    XCTAssertEqual(MetadataServer.baseURL(environment: [:]), "http://metadata.google.internal")
    XCTAssertEqual(
      MetadataServer.baseURL(environment: ["GCE_METADATA_HOST": "127.0.0.1:8089"]),
      "http://127.0.0.1:8089")

    let token = TokenRequests.metadataAccessToken(
      base: "http://127.0.0.1:8089/",
      scopes: ["https://www.googleapis.com/auth/cloud-platform", "b"])
    XCTAssertEqual(token.method, "GET")
    XCTAssertEqual(
      token.url,
      "http://127.0.0.1:8089/computeMetadata/v1/instance/service-accounts/default/token"
        + "?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform,b")
    XCTAssertEqual(token.header("Metadata-Flavor"), "Google")
    XCTAssertTrue(token.body.isEmpty)
    XCTAssertEqual(
      TokenRequests.metadataAccessToken(base: "http://m", scopes: []).url,
      "http://m/computeMetadata/v1/instance/service-accounts/default/token")

    let identity = TokenRequests.metadataIDToken(
      base: "http://metadata.google.internal/computeMetadata/v1/",
      audience: "https://svc-x.a.run.app/?a=b c")
    XCTAssertEqual(
      identity.url,
      "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity"
        + "?audience=https%3A%2F%2Fsvc-x.a.run.app%2F%3Fa%3Db%20c&format=full")
    XCTAssertEqual(identity.header("metadata-flavor"), "Google")
    XCTAssertEqual(
      TokenRequests.metadataEmail(base: "http://m").url,
      "http://m/computeMetadata/v1/instance/service-accounts/default/email")
  }

  func testMetadataPingAndADCOrder() {
    let ping = TokenRequests.metadataPing(base: "http://169.254.169.254")
    XCTAssertEqual(ping.url, "http://169.254.169.254/")
    XCTAssertEqual(ping.header("Metadata-Flavor"), "Google")
    XCTAssertTrue(TokenResponses.hasMetadataFlavor([("METADATA-FLAVOR", " Google ")]))
    XCTAssertFalse(TokenResponses.hasMetadataFlavor([("Server", "Google")]))

    typealias ADC = ApplicationDefaultCredentials
    XCTAssertEqual(
      ADC.searchOrder(environment: [
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "HOME": "/home/u",
      ]),
      [.explicitFile("/k.json")])
    XCTAssertEqual(
      ADC.searchOrder(environment: ["HOME": "/home/u"]),
      [
        .wellKnownFile("/home/u/.config/gcloud/application_default_credentials.json"),
        .metadataServer(baseURL: "http://metadata.google.internal", pingRequired: true),
      ])
    XCTAssertEqual(
      ADC.searchOrder(environment: [
        "HOME": "/home/u", "CLOUDSDK_CONFIG": "/cfg/", "GCE_METADATA_HOST": "127.0.0.1:1",
      ]),
      [
        .wellKnownFile("/cfg/application_default_credentials.json"),
        .metadataServer(baseURL: "http://127.0.0.1:1", pingRequired: false),
      ])
  }

  func testIAMGenerateAccessToken() throws {
    let request = TokenRequests.iamGenerateAccessToken(
      targetEmail: "target@p.iam.gserviceaccount.com",
      scopes: ["https://www.googleapis.com/auth/cloud-platform"],
      delegates: [
        "d1@p.iam.gserviceaccount.com", "projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com",
      ],
      sourceToken: "ya29.source")
    XCTAssertEqual(request.method, "POST")
    XCTAssertEqual(
      request.url,
      "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        + "target@p.iam.gserviceaccount.com:generateAccessToken")
    XCTAssertEqual(request.header("Authorization"), "Bearer ya29.source")
    XCTAssertEqual(request.header("Content-Type"), "application/json")
    XCTAssertEqual(
      request.bodyText,
      #"{"scope":["https://www.googleapis.com/auth/cloud-platform"],"lifetime":"3600s","#
        + #""delegates":["projects/-/serviceAccounts/d1@p.iam.gserviceaccount.com","#
        + #""projects/-/serviceAccounts/d2@p.iam.gserviceaccount.com"]}"#)
    let body = try json(request)
    XCTAssertEqual(body["lifetime"] as? String, "3600s")
    XCTAssertFalse(request.description.contains("ya29.source"))
  }

  func testIAMGenerateIDToken() throws {
    let request = TokenRequests.iamGenerateIDToken(
      endpoint: "http://127.0.0.1:7000/", targetEmail: "t@p.iam.gserviceaccount.com",
      audience: "https://svc.a.run.app", sourceToken: "ya29.src")
    XCTAssertEqual(
      request.url,
      "http://127.0.0.1:7000/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateIdToken"
    )
    XCTAssertEqual(
      request.bodyText, #"{"audience":"https://svc.a.run.app","includeEmail":true,"delegates":[]}"#)
    let body = try json(request)
    XCTAssertEqual(body["includeEmail"] as? Bool, true)
    XCTAssertEqual(request.header("authorization"), "Bearer ya29.src")
  }

  func testJSONEscaping() {
    XCTAssertEqual(
      JSONValue.string("a\"b\\c\n\u{1}é/").serialized, #""a\"b\\c\n\u0001é/""#)
  }
}
