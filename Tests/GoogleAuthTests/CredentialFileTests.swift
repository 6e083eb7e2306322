import Foundation
import XCTest

@testable import GoogleAuth

final class CredentialFileTests: XCTestCase {
  let pem =
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"

  func parse(_ json: String, path: String = "/etc/creds/key.json") throws -> CredentialFile {
    try CredentialFile.parse(data: Data(json.utf8), path: path)
  }

  func serviceAccountJSON(extra: String = "") -> String {
    let escaped = pem.replacingOccurrences(of: "\n", with: "\\n")
    return """
      {"type":"service_account","project_id":"proj","private_key_id":"abc123",
       "private_key":"\(escaped)","client_email":"robot@proj.iam.gserviceaccount.com",
       "client_id":"1234","auth_uri":"https://accounts.google.com/o/oauth2/auth"\(extra)}
      """
  }

  func assertError(
    _ json: String, contains fragments: [String], file: StaticString = #filePath,
    line: UInt = #line
  ) {
    XCTAssertThrowsError(try parse(json), file: file, line: line) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains("/etc/creds/key.json"), message, file: file, line: line)
      for fragment in fragments {
        XCTAssertTrue(
          message.contains(fragment), "\(message) lacks \(fragment)", file: file, line: line)
      }
      XCTAssertFalse(
        message.contains("MIIEvQ"), "key material in \(message)", file: file, line: line)
    }
  }

  func testServiceAccountWithDefaults() throws {
    guard case .serviceAccount(let key) = try parse(serviceAccountJSON()) else {
      return XCTFail("not a service account")
    }
    XCTAssertEqual(key.clientEmail, "robot@proj.iam.gserviceaccount.com")
    XCTAssertEqual(key.privateKeyPEM, pem)
    XCTAssertEqual(key.privateKeyID, "abc123")
    XCTAssertEqual(key.tokenURI, "https://oauth2.googleapis.com/token")
    XCTAssertEqual(key.projectID, "proj")
    XCTAssertEqual(key.universeDomain, "googleapis.com")
    // Printing a key never shows the private key.
    XCTAssertFalse("\(key)".contains("MIIEvQ"))
    XCTAssertFalse(String(reflecting: key).contains("MIIEvQ"))
    var dumped = ""
    dump(key, to: &dumped)
    XCTAssertFalse(dumped.contains("MIIEvQ"), dumped)
  }

  func testServiceAccountExplicitTokenURIAndUniverse() throws {
    let file = try parse(
      serviceAccountJSON(
        extra: #","token_uri":"http://127.0.0.1:9999/token","universe_domain":"example.goog""#))
    guard case .serviceAccount(let key) = file else { return XCTFail() }
    XCTAssertEqual(key.tokenURI, "http://127.0.0.1:9999/token")
    XCTAssertEqual(key.universeDomain, "example.goog")
    XCTAssertTrue(file.canMintIDTokens)
    XCTAssertEqual(file.typeName, "service_account")
    // Empty token_uri falls back to the default.
    guard
      case .serviceAccount(let other) = try parse(serviceAccountJSON(extra: #","token_uri":"""#))
    else { return XCTFail() }
    XCTAssertEqual(other.tokenURI, defaultTokenURI)
  }

  func testServiceAccountMissingFields() {
    assertError(
      #"{"type":"service_account","client_email":"a@b"}"#, contains: ["\"private_key\""])
    let escaped = pem.replacingOccurrences(of: "\n", with: "\\n")
    assertError(
      #"{"type":"service_account","private_key":"\#(escaped)"}"#, contains: ["\"client_email\""])
    assertError(
      #"{"type":"service_account","private_key":"\#(escaped)","client_email":42}"#,
      contains: ["\"client_email\"", "must be a string"])
    assertError(
      #"{"type":"service_account","private_key":"MIIEvQ-not-pem","client_email":"a@b"}"#,
      contains: ["not a PEM private key"])
  }

  func testAuthorizedUser() throws {
    let json = """
      {"type":"authorized_user","client_id":"cid.apps.googleusercontent.com",
       "client_secret":"d-secret","refresh_token":"1//rt","quota_project_id":"qp"}
      """
    let file = try parse(json)
    guard case .authorizedUser(let user) = file else { return XCTFail() }
    XCTAssertEqual(user.clientID, "cid.apps.googleusercontent.com")
    XCTAssertEqual(user.clientSecret, "d-secret")
    XCTAssertEqual(user.refreshToken, "1//rt")
    XCTAssertEqual(user.tokenURI, defaultTokenURI)
    XCTAssertEqual(user.quotaProjectID, "qp")
    XCTAssertFalse(file.canMintIDTokens)
    XCTAssertFalse("\(user)".contains("d-secret"))
    var dumped = ""
    dump(user, to: &dumped)
    XCTAssertFalse(dumped.contains("1//rt") || dumped.contains("d-secret"), dumped)

    assertError(
      #"{"type":"authorized_user","client_id":"c","client_secret":"s"}"#,
      contains: ["\"refresh_token\""])
  }

  func testImpersonatedServiceAccount() throws {
    let json = """
      {"type":"impersonated_service_account",
       "service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/target@p.iam.gserviceaccount.com:generateAccessToken",
       "delegates":["d1@p.iam.gserviceaccount.com"],
       "source_credentials":{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}}
      """
    guard case .impersonatedServiceAccount(let imp) = try parse(json) else { return XCTFail() }
    XCTAssertEqual(imp.targetEmail, "target@p.iam.gserviceaccount.com")
    XCTAssertEqual(imp.delegates, ["d1@p.iam.gserviceaccount.com"])
    XCTAssertEqual(imp.iamEndpoint, "https://iamcredentials.googleapis.com")
    XCTAssertEqual(
      imp.sourceCredentials,
      .authorizedUser(AuthorizedUser(clientID: "c", clientSecret: "s", refreshToken: "r")))

    // Nested service-account source, no delegates.
    let nested = """
      {"type":"impersonated_service_account",
       "service_account_impersonation_url":"http://127.0.0.1:8080/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateAccessToken",
       "source_credentials":\(serviceAccountJSON())}
      """
    guard case .impersonatedServiceAccount(let other) = try parse(nested) else { return XCTFail() }
    XCTAssertEqual(other.delegates, [])
    XCTAssertEqual(other.iamEndpoint, "http://127.0.0.1:8080")
    guard case .serviceAccount = other.sourceCredentials else { return XCTFail() }
  }

  func testImpersonationErrors() {
    assertError(
      #"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/v1/sa:generateIdToken","source_credentials":{}}"#,
      contains: ["service_account_impersonation_url"])
    assertError(
      #"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/v1/projects/-/serviceAccounts/t@p:generateAccessToken"}"#,
      contains: ["\"source_credentials\""])
    assertError(
      #"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/v1/projects/-/serviceAccounts/t@p:generateAccessToken","source_credentials":{"type":"service_account","client_email":"a@b"}}"#,
      contains: ["\"source_credentials.private_key\""])
    assertError(
      #"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/v1/projects/-/serviceAccounts/t@p:generateAccessToken","source_credentials":{"type":"external_account_authorized_user"}}"#,
      contains: ["external_account_authorized_user", "not supported"])
    assertError(
      #"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/v1/projects/-/serviceAccounts/t@p:generateAccessToken","delegates":"d","source_credentials":{}}"#,
      contains: ["\"delegates\"", "list of strings"])
  }

  func testUnsupportedTypes() {
    assertError(
      #"{"type":"external_account_authorized_user","audience":"//iam.googleapis.com/x"}"#,
      contains: [
        "external_account_authorized_user", "not supported", "service_account", "authorized_user",
        "impersonated_service_account", "external_account",
      ])
    assertError(
      #"{"type":"gdch_service_account"}"#,
      contains: ["unsupported credential type \"gdch_service_account\"", "supported types"])
    assertError(#"{"client_email":"a@b"}"#, contains: ["missing \"type\""])
    assertError("[1,2]", contains: ["not a JSON object"])
    assertError("not json MIIEvQ", contains: ["not a JSON object"])
    assertError("", contains: ["not a JSON object"])
  }
}
