import Foundation
import XCTest

@testable import GoogleAuth

/// `external_account` files (workload identity federation): parsing, subject tokens, the
/// executable contract, command splitting and the STS request.
final class ExternalAccountTests: XCTestCase {
  let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/gh"

  func account(_ source: String, extra: String = "") throws -> ExternalAccount {
    let json = """
      {"type":"external_account","audience":"\(pool)",
       "subject_token_type":"urn:ietf:params:oauth:token-type:jwt",
       "token_url":"https://sts.googleapis.com/v1/token",
       "credential_source":\(source)\(extra)}
      """
    guard
      case .externalAccount(let a) = try CredentialFile.parse(
        data: Data(json.utf8), path: "/w.json")
    else {
      XCTFail("not an external account")
      throw CredentialFileError(path: "", reason: "")
    }
    return a
  }

  func error(_ source: String, extra: String = "") -> String {
    do {
      _ = try account(source, extra: extra)
      return "parsed"
    } catch { return "\(error)" }
  }

  func testSources() throws {
    let file = try account(#"{"file":"/var/run/token"}"#)
    XCTAssertEqual(file.source, .file(path: "/var/run/token", format: .text))
    XCTAssertEqual(file.tokenURL, "https://sts.googleapis.com/v1/token")
    XCTAssertNil(file.impersonationURL)
    XCTAssertFalse(CredentialFile.externalAccount(file).canMintIDTokens)

    let json = try account(
      #"{"file":"/t.json","format":{"type":"json","subject_token_field_name":"id_token"}}"#)
    XCTAssertEqual(json.source, .file(path: "/t.json", format: .json(field: "id_token")))

    let url = try account(
      #"{"url":"https://idp/token","headers":{"Metadata":"True","Authorization":"Bearer x"},"format":{"type":"json","subject_token_field_name":"value"}}"#
    )
    XCTAssertEqual(
      url.source,
      .url(
        url: "https://idp/token",
        headers: [.init("Authorization", "Bearer x"), .init("Metadata", "True")],
        format: .json(field: "value")))
    XCTAssertEqual(url.sourceDescription, "subject token url https://idp/token")

    let exe = try account(
      #"{"executable":{"command":"/bin/get-token --aud 'a b' \"c\\\"d\"","timeout_millis":5000,"output_file":"/tmp/out.json"}}"#,
      extra:
        #","service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken","service_account_impersonation":{"token_lifetime_seconds":1800}"#
    )
    XCTAssertEqual(
      exe.source,
      .executable(
        command: ["/bin/get-token", "--aud", "a b", "c\"d"], timeoutMs: 5000,
        outputFile: "/tmp/out.json"))
    XCTAssertEqual(exe.impersonationTarget, "sa@p.iam.gserviceaccount.com")
    XCTAssertEqual(exe.iamEndpoint, "https://iamcredentials.googleapis.com")
    XCTAssertEqual(exe.tokenLifetimeSeconds, 1800)
    XCTAssertTrue(CredentialFile.externalAccount(exe).canMintIDTokens)
    XCTAssertEqual(exe.executableEnvironment["GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE"], pool)
    XCTAssertEqual(
      exe.executableEnvironment["GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL"],
      "sa@p.iam.gserviceaccount.com")
    XCTAssertEqual(
      exe.executableEnvironment["GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE"], "/tmp/out.json")
    XCTAssertEqual(exe.executableEnvironment["GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE"], "0")
    XCTAssertEqual(
      try account(#"{"executable":{"command":"x"}}"#).source,
      .executable(command: ["x"], timeoutMs: 30_000, outputFile: nil))
  }

  func testErrors() {
    XCTAssertTrue(
      error(#"{"environment_id":"aws1"}"#).contains("environment_id (AWS) is not supported"))
    XCTAssertTrue(error(#"{"certificate":{}}"#).contains("certificate"))
    XCTAssertTrue(
      error(#"{"file":"/a","url":"https://b"}"#).contains("has file and url; expected exactly one"))
    XCTAssertTrue(error(#"{}"#).contains("none of file, url, executable"))
    XCTAssertTrue(
      error(#"{"file":"/a","format":{"type":"json"}}"#).contains("needs subject_token_field_name"))
    XCTAssertTrue(
      error(#"{"file":"/a","format":{"type":"xml"}}"#).contains("expected text or json"))
    XCTAssertTrue(
      error(#"{"executable":{"command":"x","timeout_millis":1000}}"#).contains(
        "between 5000 and 120000"))
    XCTAssertTrue(error(#"{"executable":{"command":"x 'open"}}"#).contains("unterminated"))
    XCTAssertTrue(
      error(#"{"url":"https://a","headers":{"X":"a\r\nInjected: 1"}}"#).contains("cannot carry"))
    XCTAssertTrue(
      error(#"{"file":"/a"}"#, extra: #","workforce_pool_user_project":"p""#)
        .contains("not a workforce pool"))
    XCTAssertTrue(
      error(
        #"{"file":"/a"}"#, extra: #","service_account_impersonation_url":"https://x/v1/nothing""#
      ).contains("generateAccessToken"))
  }

  func testSubjectTokens() {
    XCTAssertEqual(try SubjectTokens.extract(Array("  a.b.c\n".utf8), format: .text).get(), "a.b.c")
    XCTAssertEqual(
      try SubjectTokens.extract(
        Array(#"{"value":"jwt","count":1}"#.utf8), format: .json(field: "value")
      )
      .get(), "jwt")
    for (content, format) in [
      ("", ExternalAccount.SubjectFormat.text), ("\n", .text), ("a\u{1}b", .text),
      ("not json", .json(field: "value")), (#"{"other":"secret-content"}"#, .json(field: "value")),
    ] {
      guard case .failure(let p) = SubjectTokens.extract(Array(content.utf8), format: format) else {
        return XCTFail("accepted \(content)")
      }
      XCTAssertFalse(p.description.contains("secret-content"), p.description)
    }
  }

  func testExecutableResponse() throws {
    let now = 1_700_000_000.0
    func parse(_ s: String, requireExpiration: Bool = false) -> Result<
      (token: String, expiresAt: Double?), SubjectTokenProblem
    > {
      SubjectTokens.executableResponse(
        Array(s.utf8), now: now, requireExpiration: requireExpiration)
    }
    let ok = try parse(
      #"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"j.w.t","expiration_time":1700000600}"#
    ).get()
    XCTAssertEqual(ok.token, "j.w.t")
    XCTAssertEqual(ok.expiresAt, 1_700_000_600)
    let saml = try parse(
      #"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:saml2","saml_response":"PHNhbWw+"}"#
    ).get()
    XCTAssertEqual(saml.token, "PHNhbWw+")
    XCTAssertNil(saml.expiresAt)
    let cases: [(String, String)] = [
      (#"{"success":true}"#, "no version"),
      (#"{"version":2,"success":true}"#, "version 2 is not supported"),
      (#"{"version":1}"#, "no success field"),
      (#"{"version":1,"success":false,"code":"1","message":"m"}"#, "success: false"),
      (
        #"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"t","expiration_time":1}"#,
        "has expired"
      ),
      (
        #"{"version":1,"success":true,"token_type":"x","id_token":"t"}"#,
        "not jwt, id_token or saml2"
      ),
      (
        #"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt"}"#,
        "no id_token"
      ),
      ("garbage", "printed no JSON object"),
    ]
    for (text, needle) in cases {
      guard case .failure(let p) = parse(text) else { return XCTFail("accepted \(text)") }
      XCTAssertTrue(p.description.contains(needle), "\(p) for \(text)")
    }
    guard
      case .failure(let p) = parse(
        #"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"t"}"#,
        requireExpiration: true)
    else { return XCTFail() }
    XCTAssertTrue(p.description.contains("no expiration_time"))
  }

  /// The words `shlex.split` gives for the same lines (checked with Python 3.11).
  func testCommandLineSplitting() {
    let cases: [(String, [String]?)] = [
      ("a b  c", ["a", "b", "c"]),
      ("  /bin/x --a='1 2' \"b c\" d\\ e", ["/bin/x", "--a=1 2", "b c", "d e"]),
      (#"a "x\"y" 'p\q' \$HOME"#, ["a", "x\"y", "p\\q", "$HOME"]),
      ("a ''", ["a", ""]),
      ("", []),
      ("a 'b", nil),
      ("a \"b", nil),
      ("a \\", nil),
    ]
    for (line, words) in cases {
      XCTAssertEqual(CommandLineSplitter.split(line), words, line)
    }
  }

  func testSTSRequest() throws {
    var a = try account(#"{"file":"/t"}"#)
    a.audience = "//iam.googleapis.com/locations/global/workforcePools/w/providers/p"
    a.workforcePoolUserProject = "proj-1"
    let r = TokenRequests.stsExchange(a, subjectToken: "SUBJ", scopes: ["s1", "s2"])
    XCTAssertEqual(r.method, "POST")
    XCTAssertEqual(r.url, "https://sts.googleapis.com/v1/token")
    XCTAssertEqual(r.header("Content-Type"), "application/x-www-form-urlencoded")
    XCTAssertNil(r.header("Authorization"))
    let form = Dictionary(
      uniqueKeysWithValues: r.bodyText.split(separator: "&").map { pair -> (String, String) in
        let kv = pair.split(separator: "=", maxSplits: 1).map {
          String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding!
        }
        return (kv[0], kv[1])
      })
    XCTAssertEqual(form["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange")
    XCTAssertEqual(form["requested_token_type"], "urn:ietf:params:oauth:token-type:access_token")
    XCTAssertEqual(form["subject_token"], "SUBJ")
    XCTAssertEqual(form["scope"], "s1 s2")
    XCTAssertEqual(form["audience"], a.audience)
    // Encoded twice, as google-auth does: once as a value, once by the form.
    XCTAssertEqual(form["options"]?.removingPercentEncoding, #"{"userProject":"proj-1"}"#)

    a.clientID = "cid"
    a.clientSecret = "sec"
    let basic = TokenRequests.stsExchange(a, subjectToken: "S", scopes: [])
    XCTAssertEqual(
      basic.header("Authorization"), "Basic " + Data("cid:sec".utf8).base64EncodedString())
    XCTAssertFalse(basic.bodyText.contains("options"), "a client id names the project")
    XCTAssertFalse(basic.bodyText.contains("scope="))
  }
}
