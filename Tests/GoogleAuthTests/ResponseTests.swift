import Foundation
import XCTest

@testable import GoogleAuth

final class ResponseTests: XCTestCase {
  let flavor = [("Metadata-Flavor", "Google")]

  func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

  func token(
    _ result: Result<MintedToken, TokenEndpointError>, file: StaticString = #filePath,
    line: UInt = #line
  ) -> MintedToken? {
    switch result {
    case .success(let token): return token
    case .failure(let error):
      XCTFail("unexpected error \(error)", file: file, line: line)
      return nil
    }
  }

  func failure(
    _ result: Result<MintedToken, TokenEndpointError>, file: StaticString = #filePath,
    line: UInt = #line
  ) -> TokenEndpointError? {
    switch result {
    case .success(let token):
      XCTFail("unexpected token \(token)", file: file, line: line)
      return nil
    case .failure(let error): return error
    }
  }

  func testAccessTokenResponse() {
    let minted = token(
      TokenResponses.accessToken(
        status: 200,
        body: bytes(#"{"access_token":"ya29.abc","expires_in":3599,"token_type":"Bearer"}"#),
        requestTime: 1000))
    XCTAssertEqual(minted, MintedToken(value: "ya29.abc", expiresAt: 4599, kind: .accessToken))
    XCTAssertFalse("\(minted!)".contains("ya29.abc"))

    let stringExpiry = token(
      TokenResponses.accessToken(
        status: 200, body: bytes(#"{"access_token":"t","expires_in":"120"}"#), requestTime: 50))
    XCTAssertEqual(stringExpiry?.expiresAt, 170)
    let noExpiry = token(
      TokenResponses.accessToken(status: 200, body: bytes(#"{"access_token":"t"}"#), requestTime: 0)
    )
    XCTAssertEqual(noExpiry?.expiresAt, 3600)
  }

  func testAccessTokenResponseFailures() {
    let missing = failure(
      TokenResponses.accessToken(status: 200, body: bytes(#"{"expires_in":3599}"#), requestTime: 0))
    XCTAssertEqual(missing?.error, "invalid_response")
    XCTAssertTrue(missing?.description.contains("no access_token") == true)

    let withError = failure(
      TokenResponses.accessToken(
        status: 200, body: bytes(#"{"access_token":"ya29.x","error":"server_error"}"#),
        requestTime: 0))
    XCTAssertEqual(withError?.error, "server_error")
    XCTAssertEqual(withError?.retryable, true)

    let badExpiry = failure(
      TokenResponses.accessToken(
        status: 200, body: bytes(#"{"access_token":"ya29.x","expires_in":"soon"}"#),
        requestTime: 0))
    XCTAssertTrue(badExpiry?.description.contains("expires_in") == true)
    XCTAssertFalse(badExpiry?.description.contains("ya29.x") == true)
    let boolExpiry = failure(
      TokenResponses.accessToken(
        status: 200, body: bytes(#"{"access_token":"ya29.x","expires_in":true}"#),
        requestTime: 0))
    XCTAssertNotNil(boolExpiry)

    let grant = failure(
      TokenResponses.accessToken(
        status: 400,
        body: bytes(#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#),
        requestTime: 0))
    XCTAssertEqual(
      grant,
      TokenEndpointError(
        status: 400, error: "invalid_grant", errorDescription: "Invalid JWT Signature.",
        retryable: false))
    XCTAssertEqual(
      grant?.description, "token endpoint HTTP 400: invalid_grant: Invalid JWT Signature.")
  }

  func testGarbageBodies() {
    // A 200 body might hold a token: never echoed.
    let garbage200 = failure(
      TokenResponses.accessToken(
        status: 200, body: bytes("access_token=ya29.secret&expires_in=3599"), requestTime: 0))
    XCTAssertEqual(garbage200?.error, "invalid_response")
    XCTAssertTrue(garbage200?.description.contains("not a JSON object") == true)
    XCTAssertFalse(garbage200?.description.contains("ya29") == true)
    XCTAssertEqual(garbage200?.retryable, false)

    let truncated = failure(
      TokenResponses.accessToken(
        status: 200, body: bytes(#"{"access_token":"ya29.s"#), requestTime: 0))
    XCTAssertFalse(truncated?.description.contains("ya29") == true)

    // A non-200 non-JSON body is echoed, at most 100 characters, printable only.
    let html = "<html><body>" + String(repeating: "Bad Gateway ", count: 30) + "</body></html>"
    let gateway = failure(
      TokenResponses.accessToken(status: 502, body: bytes(html), requestTime: 0))
    XCTAssertEqual(gateway?.status, 502)
    XCTAssertEqual(gateway?.retryable, false)
    let detail = gateway?.errorDescription ?? ""
    XCTAssertTrue(detail.hasPrefix("non-JSON response: <html><body>Bad Gateway"), detail)
    XCTAssertLessThanOrEqual(detail.count, "non-JSON response: ".count + 100 + "...".count)

    let control = failure(
      TokenResponses.accessToken(status: 500, body: bytes("oops\r\ninjected"), requestTime: 0))
    XCTAssertEqual(control?.errorDescription, "non-JSON response: oops??injected")
    XCTAssertEqual(control?.retryable, true)

    let empty = failure(TokenResponses.accessToken(status: 503, body: [], requestTime: 0))
    XCTAssertEqual(empty?.errorDescription, "empty response body")
  }

  func testRetryableClassification() {
    for status in [408, 429, 500, 503, 504] {
      XCTAssertTrue(TokenResponses.isRetryable(status: status, error: nil), "\(status)")
    }
    for status in [200, 400, 401, 403, 404, 501, 502] {
      XCTAssertFalse(TokenResponses.isRetryable(status: status, error: nil), "\(status)")
    }
    for error in ["internal_failure", "server_error", "temporarily_unavailable"] {
      XCTAssertTrue(TokenResponses.isRetryable(status: 400, error: error))
      let parsed = failure(
        TokenResponses.accessToken(
          status: 400, body: bytes(#"{"error":"\#(error)"}"#), requestTime: 0))
      XCTAssertEqual(parsed?.retryable, true)
    }
    XCTAssertFalse(TokenResponses.isRetryable(status: 400, error: "invalid_scope"))
    let limited = failure(
      TokenResponses.accessToken(
        status: 429, body: bytes(#"{"error":"rate_limited"}"#), requestTime: 0))
    XCTAssertEqual(limited?.retryable, true)
    XCTAssertTrue(TokenEndpointError.transport("connect refused").retryable)
    XCTAssertFalse(TokenEndpointError.local("bad key").retryable)
  }

  func testIDTokenResponse() {
    let jwt = fakeJWT(#"{"aud":"https://svc","exp":1900000000,"iat":1899996400}"#)
    let minted = token(TokenResponses.idToken(status: 200, body: bytes(#"{"id_token":"\#(jwt)"}"#)))
    XCTAssertEqual(minted, MintedToken(value: jwt, expiresAt: 1_900_000_000, kind: .idToken))

    let notJWT = failure(
      TokenResponses.idToken(status: 200, body: bytes(#"{"id_token":"opaque"}"#)))
    XCTAssertTrue(notJWT?.description.contains("not a JWT") == true)
    XCTAssertFalse(notJWT?.description.contains("opaque") == true)
    let accessOnly = failure(
      TokenResponses.idToken(status: 200, body: bytes(#"{"access_token":"ya29"}"#)))
    XCTAssertTrue(accessOnly?.description.contains("no id_token") == true)
    let denied = failure(
      TokenResponses.idToken(
        status: 400, body: bytes(#"{"error":"invalid_request","error_description":"no aud"}"#)))
    XCTAssertEqual(denied?.error, "invalid_request")
  }

  func testMetadataAccessToken() {
    let body = bytes(#"{"access_token":"ya29.m","expires_in":"3000","token_type":"Bearer"}"#)
    let minted = token(
      TokenResponses.metadataAccessToken(
        status: 200,
        headers: [("metadata-flavor", "Google"), ("Content-Type", "application/json")],
        body: body, requestTime: 100))
    XCTAssertEqual(minted?.expiresAt, 3100)

    let impostor = failure(
      TokenResponses.metadataAccessToken(
        status: 200, headers: [("Content-Type", "application/json")], body: body, requestTime: 0))
    XCTAssertEqual(impostor?.error, "metadata_flavor_missing")
    XCTAssertTrue(impostor?.description.contains("Metadata-Flavor") == true)
    XCTAssertFalse(impostor?.description.contains("ya29") == true)
    let wrongValue = failure(
      TokenResponses.metadataAccessToken(
        status: 200, headers: [("Metadata-Flavor", "Amazon")], body: body, requestTime: 0))
    XCTAssertEqual(wrongValue?.error, "metadata_flavor_missing")

    let notFound = failure(
      TokenResponses.metadataAccessToken(
        status: 404, headers: flavor, body: bytes("service account not found"), requestTime: 0))
    XCTAssertEqual(notFound?.status, 404)
    XCTAssertEqual(notFound?.source, "metadata server")
    XCTAssertEqual(notFound?.errorDescription, "non-JSON response: service account not found")
    XCTAssertEqual(notFound?.retryable, false)
    let busy = failure(
      TokenResponses.metadataAccessToken(status: 503, headers: flavor, body: [], requestTime: 0))
    XCTAssertEqual(busy?.retryable, true)
  }

  func testMetadataIDToken() {
    let jwt = fakeJWT(#"{"exp":1800000000}"#)
    let minted = token(
      TokenResponses.metadataIDToken(status: 200, headers: flavor, body: bytes(jwt + "\n")))
    XCTAssertEqual(minted, MintedToken(value: jwt, expiresAt: 1_800_000_000, kind: .idToken))
    let impostor = failure(
      TokenResponses.metadataIDToken(status: 200, headers: [], body: bytes(jwt)))
    XCTAssertEqual(impostor?.error, "metadata_flavor_missing")
    let garbage = failure(
      TokenResponses.metadataIDToken(status: 200, headers: flavor, body: bytes("<html>hi</html>")))
    XCTAssertEqual(garbage?.error, "invalid_response")
    XCTAssertFalse(garbage?.description.contains("html") == true)
    let badRequest = failure(
      TokenResponses.metadataIDToken(
        status: 400, headers: flavor, body: bytes("non-empty audience parameter required")))
    XCTAssertEqual(
      badRequest?.errorDescription, "non-JSON response: non-empty audience parameter required")
  }

  func testIAMResponses() {
    let access = token(
      TokenResponses.iamAccessToken(
        status: 200, body: bytes(#"{"accessToken":"ya29.imp","expireTime":"2026-01-01T00:00:00Z"}"#)
      ))
    XCTAssertEqual(
      access, MintedToken(value: "ya29.imp", expiresAt: 1_767_225_600, kind: .accessToken))

    let badTime = failure(
      TokenResponses.iamAccessToken(
        status: 200, body: bytes(#"{"accessToken":"ya29.imp","expireTime":"tomorrow"}"#)))
    XCTAssertTrue(badTime?.description.contains("expireTime") == true)
    XCTAssertFalse(badTime?.description.contains("ya29") == true)

    let jwt = fakeJWT(#"{"exp":1767225600,"email":"t@p"}"#)
    let id = token(TokenResponses.iamIDToken(status: 200, body: bytes(#"{"token":"\#(jwt)"}"#)))
    XCTAssertEqual(id, MintedToken(value: jwt, expiresAt: 1_767_225_600, kind: .idToken))

    let denied = failure(
      TokenResponses.iamAccessToken(
        status: 403,
        body: bytes(
          #"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#
        )))
    XCTAssertEqual(
      denied,
      TokenEndpointError(
        status: 403, error: "PERMISSION_DENIED",
        errorDescription: "Permission 'iam.serviceAccounts.getAccessToken' denied",
        retryable: false, source: "IAM Credentials"))
    let unavailable = failure(
      TokenResponses.iamIDToken(
        status: 503, body: bytes(#"{"error":{"code":503,"message":"try later"}}"#)))
    XCTAssertEqual(unavailable?.error, "503")
    XCTAssertEqual(unavailable?.retryable, true)
    let missing = failure(TokenResponses.iamIDToken(status: 200, body: bytes(#"{}"#)))
    XCTAssertTrue(missing?.description.contains("no token") == true)
    let noDetails = failure(TokenResponses.iamIDToken(status: 401, body: bytes(#"{"x":1}"#)))
    XCTAssertEqual(noDetails?.errorDescription, "HTTP 401 with no error details")
  }

  func testRFC3339() {
    XCTAssertEqual(RFC3339.parse("1970-01-01T00:00:00Z"), 0)
    XCTAssertEqual(RFC3339.parse("2026-01-01T00:00:00Z"), 1_767_225_600)
    XCTAssertEqual(RFC3339.parse("2000-02-29T12:34:56Z"), 951_827_696)
    XCTAssertEqual(RFC3339.parse("2026-01-01T02:00:00+02:00"), 1_767_225_600)
    XCTAssertEqual(RFC3339.parse("2025-12-31T19:00:00-05:00"), 1_767_225_600)
    XCTAssertEqual(RFC3339.parse("2026-01-01T00:00:00.5Z"), 1_767_225_600.5)
    XCTAssertEqual(
      RFC3339.parse("2026-01-01T00:00:00.123456789Z")!, 1_767_225_600.123456789, accuracy: 1e-6)
    for bad in [
      "", "2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00Zx",
      "2026-01-01T00:00:00.Z", "26-01-01T00:00:00Z", "2026-01-01T00:00:00+0200",
    ] {
      XCTAssertNil(RFC3339.parse(bad), bad)
    }
  }

  func testBase64URL() {
    XCTAssertEqual(Base64URL.encode([0xFB, 0xFF]), "-_8")
    XCTAssertEqual(Base64URL.decode("-_8"), [0xFB, 0xFF])
    XCTAssertEqual(Base64URL.decode("-_8="), [0xFB, 0xFF])
    XCTAssertEqual(Base64URL.encode([]), "")
    XCTAssertNil(Base64URL.decode("a+b"))
    XCTAssertNil(Base64URL.decode("a"))
    for length in 0..<10 {
      let data = (0..<length).map { UInt8($0 * 37 & 0xFF) }
      XCTAssertEqual(Base64URL.decode(Base64URL.encode(data)), data)
    }
  }
}
