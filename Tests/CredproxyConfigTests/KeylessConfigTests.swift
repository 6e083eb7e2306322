import CredproxyConfig
import XCTest

/// `client … { oidc … }`, `source github-app …` and `auth basic USER token`.
final class KeylessConfigTests: XCTestCase {
  func testOIDCClient() throws {
    let c = try parse(
      """
      client deploy {
        oidc issuer https://token.actions.githubusercontent.com audience credproxy claim repository myorg/deploy claim ref refs/heads/main
      }
      client local {
        oidc audience a issuer http://127.0.0.1:9000
      }
      """)
    XCTAssertEqual(
      c.clients[0].oidc,
      OIDCClientRule(
        issuer: "https://token.actions.githubusercontent.com", audience: "credproxy",
        claims: [
          .init(key: "repository", value: "myorg/deploy"),
          .init(key: "ref", value: "refs/heads/main"),
        ]))
    XCTAssertEqual(c.clients[1].oidc?.issuer, "http://127.0.0.1:9000")
    XCTAssertTrue(c.clients[0].authenticates)
    XCTAssertEqual(
      c.clients[0].identificationSummary,
      "oidc issuer https://token.actions.githubusercontent.com audience credproxy claim repository myorg/deploy claim ref refs/heads/main"
    )
  }

  func testOIDCClientErrors() {
    XCTAssertEqual(
      diagnostics("client a {\n  oidc issuer http://issuer.example.com audience x\n}\n"),
      [
        "proxy.conf:2:15: oidc issuer must use https unless its host is loopback (127.0.0.0/8, ::1, localhost); expected https://…"
      ])
    // OpenID Connect: an issuer has no query or fragment (its discovery path is appended).
    for issuer in ["https://i.example.com/?tenant=x", "\"https://i.example.com/#x\""] {
      XCTAssertEqual(
        diagnostics("client a {\n  oidc issuer \(issuer) audience x\n}\n"),
        [
          "proxy.conf:2:15: oidc issuer has a query or fragment; expected a base URL like https://token.actions.githubusercontent.com"
        ])
    }
    XCTAssertEqual(
      diagnostics("client a {\n  oidc issuer https://i.example.com\n}\n"),
      [
        "proxy.conf:2:3: oidc is missing audience; expected oidc issuer URL audience AUDIENCE [claim KEY VALUE]… (the caller's own OIDC token, e.g. from GitHub Actions)"
      ])
    XCTAssertEqual(
      diagnostics(
        "client a {\n  oidc issuer https://i.example.com audience x claim ref a claim ref b\n}\n"),
      ["proxy.conf:2:66: duplicate claim \"ref\"; expected each claim once"])
    XCTAssertEqual(
      diagnostics("client a {\n  oidc issuer https://i.example.com audience x claim ref\n}\n"),
      [
        "proxy.conf:2:48: claim is missing its value; expected oidc issuer URL audience AUDIENCE [claim KEY VALUE]… (the caller's own OIDC token, e.g. from GitHub Actions)"
      ])
    XCTAssertEqual(
      diagnostics("client a {\n  oidc issuer https://i.example.com audience x subject y\n}\n"),
      [
        "proxy.conf:2:48: unexpected \"subject\" in oidc; expected oidc issuer URL audience AUDIENCE [claim KEY VALUE]… (the caller's own OIDC token, e.g. from GitHub Actions)"
      ])
  }

  func testGitHubAppSource() throws {
    let c = try parse(
      """
      credentials gh {
        source github-app app-id 123456 installation-id 7890 private-key file:/etc/credproxy/gh.pem repositories deploy "permissions" permissions contents:read issues:write
      }
      credentials ghe {
        source github-app private-key env:GHE_KEY installation-id 1 app-id Iv1.abc api-url https://ghe.example.com/api/v3/
      }
      route api.github.com {
        credentials gh
        auth basic x-access-token token
      }
      route github.com {
        auth basic x-access-token "token"
      }
      """)
    XCTAssertEqual(
      c.credentials[0].source,
      .githubApp(
        GitHubAppSpec(
          appID: "123456", installationID: "7890", privateKey: .file("/etc/credproxy/gh.pem"),
          repositories: ["deploy", "permissions"],
          permissions: [
            .init(name: "contents", level: "read"), .init(name: "issues", level: "write"),
          ])))
    guard case .githubApp(let ghe) = c.credentials[1].source else { return XCTFail() }
    XCTAssertEqual(ghe.apiURL, "https://ghe.example.com/api/v3")
    XCTAssertEqual(ghe.appID, "Iv1.abc")
    XCTAssertEqual(c.routes[0].auth, .basicToken(user: "x-access-token"))
    XCTAssertTrue(c.routes[0].auth.usesGoogleCredentials)
    XCTAssertEqual(c.routes[0].injectedHeaderName, "Authorization")
    // Quoted, `token` is a literal password as before.
    XCTAssertEqual(c.routes[1].auth, .basic(user: "x-access-token", password: .literal("token")))
  }

  func testGitHubAppErrors() {
    let usage =
      "source github-app app-id N installation-id M private-key SECRET [api-url URL] [repositories NAME…] [permissions NAME:read|write…]"
    XCTAssertEqual(
      diagnostics("credentials gh {\n  source github-app app-id 1 private-key env:K\n}\n"),
      ["proxy.conf:2:10: github-app is missing installation-id; expected \(usage)"])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 installation-id x private-key env:K\n}\n"),
      [
        "proxy.conf:2:46: installation-id \"x\" is not a number; expected e.g. installation-id 7890123"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 installation-id 2 private-key env:K permissions contents\n}\n"
      ),
      [
        "proxy.conf:2:78: permission \"contents\" is not NAME:LEVEL; expected e.g. contents:read or issues:write"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 installation-id 2 private-key env:K repositories myorg/deploy\n}\n"
      ),
      [
        "proxy.conf:2:79: repository \"myorg/deploy\" names an owner; expected the name only (the installation's owner is implied)"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 installation-id 2 private-key env:K api-url http://ghe.example.com\n}\n"
      ),
      [
        "proxy.conf:2:74: api-url must use https unless its host is loopback (127.0.0.0/8, ::1, localhost); expected https://…"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 installation-id 2 private-key env:K api-url https://ghe.example.com/api/v3?x=1\n}\n"
      ),
      [
        "proxy.conf:2:74: api-url has a query or fragment; expected a base URL like https://HOST/api/v3"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials gh {\n  source github-app app-id 1 app-id 2 installation-id 2 private-key env:K\n}\n"
      ),
      ["proxy.conf:2:30: duplicate app-id in source github-app; expected it once"])
  }

  func testGoogleAuthOnAGitHubAppIsAnError() {
    let gh =
      "credentials gh {\n  source github-app app-id 1 installation-id 2 private-key env:K\n}\n"
    XCTAssertEqual(
      diagnostics(gh + "route a.example.com {\n  credentials gh\n  auth OAuth2\n}\n"),
      [
        "proxy.conf:5:15: auth OAuth2 uses credentials \"gh\" (source github-app), which mints GitHub installation tokens, not Google access tokens; expected auth token (Bearer) or auth basic x-access-token token (git over http)"
      ])
    // Both token forms are fine, on a github-app and on a program's token alike.
    XCTAssertNoThrow(
      try parse(gh + "route a.example.com {\n  credentials gh\n  auth token\n}\n"))
    XCTAssertNoThrow(
      try parse(
        "credentials p {\n  source exec /bin/true\n}\nroute a.example.com {\n  credentials p\n  auth basic x-access-token token\n}\n"
      ))
    XCTAssertEqual(
      diagnostics(gh + "route a.example.com {\n  credentials gh\n  auth OIDC\n}\n"),
      [
        "proxy.conf:5:15: auth OIDC uses credentials \"gh\" (source github-app), and a GitHub App mints installation tokens, not ID tokens; expected credentials with source adc, key-file, metadata or impersonate"
      ])
  }
}
