import XCTest

@testable import CredproxyConfig

final class ReportTests: XCTestCase {
  let literal = "sup3r-s3cret-literal"
  let envValue = "env-t0ken-value"

  var config: ProxyConfig {
    get throws {
      try ConfigParser.parse(
        text: """
          listen 127.0.0.1:8080
          route api.example.com/v1 {
            methods GET POST
            auth bearer env:EXAMPLE_TOKEN
          }
          route inline.example.com {
            auth header X-Api-Key "\(literal)"
          }
          route basic.example.com:8443 {
            connect-to 10.0.0.9:443
            auth basic alice env:MISSING_PASSWORD
            max-body 1m
          }
          route storage.googleapis.com {
            auth OAuth2 scopes "https://www.googleapis.com/auth/devstorage.read_only"
          }
          route svc-abc.a.run.app {
            auth OIDC
            auth-header X-Serverless-Authorization
          }
          route evil.example.com {
            deny
          }
          """, path: "proxy.conf")
    }
  }

  func testCheckReportNeverPrintsSecrets() throws {
    let text = CheckReport.render(try config, environment: ["EXAMPLE_TOKEN": envValue])
    XCTAssertFalse(text.contains(literal), text)
    XCTAssertFalse(text.contains(envValue), text)
    XCTAssertTrue(text.contains("bearer env:EXAMPLE_TOKEN"), text)
    XCTAssertTrue(text.contains("header X-Api-Key inline secret"), text)
    XCTAssertTrue(text.contains("listen: 127.0.0.1:8080"), text)
    XCTAssertTrue(
      text.contains(
        "warning: proxy.conf:7:25: inline secret in the config file; prefer env:NAME or file:PATH"),
      text)
    XCTAssertTrue(
      text.contains(
        "warning: proxy.conf:9:1: route #3 basic.example.com:8443: env:MISSING_PASSWORD is not set; its requests get 503 credential_unavailable until it is available"
      ), text)
    XCTAssertFalse(text.contains("EXAMPLE_TOKEN is not set"), text)
    XCTAssertTrue(text.contains("default  adc"), text)
    XCTAssertTrue(
      text.contains(
        "OIDC audience origin credentials default auth-header X-Serverless-Authorization"), text)
    // The unset variable is a warning, not an error: the config loaded.
    XCTAssertTrue(text.hasPrefix("proxy.conf: configuration is valid"), text)
  }

  func testCheckReportRoutesTable() throws {
    let text = CheckReport.render(try config, environment: [:])
    let lines = text.split(separator: "\n").map(String.init)
    let header = try XCTUnwrap(lines.first { $0.hasPrefix("  #  patterns") })
    XCTAssertTrue(
      header.contains("upstream") && header.contains("connect-to") && header.hasSuffix("line"),
      header)
    let row3 = try XCTUnwrap(lines.first { $0.hasPrefix("  3  ") })
    for part in [
      "basic.example.com:8443", "https", "10.0.0.9:443", "basic alice env:MISSING_PASSWORD",
      "max-body 1m", " 9",
    ] {
      XCTAssertTrue(row3.contains(part), "\(part) in \(row3)")
    }
    let row6 = try XCTUnwrap(lines.first { $0.hasPrefix("  6  ") })
    XCTAssertTrue(row6.contains("deny"), row6)
  }

  func testExplainAllowed() throws {
    let c = try config
    let (text, allowed) = Explain.render(
      config: c, url: "http://api.example.com/v1/x?y=1", method: "get",
      environment: ["EXAMPLE_TOKEN": envValue])
    XCTAssertTrue(allowed)
    XCTAssertFalse(text.contains(envValue))
    XCTAssertTrue(text.contains("route #1 api.example.com/v1 (proxy.conf:2)"), text)
    XCTAssertTrue(text.contains("upstream: https://api.example.com:443/v1/x?y=1"), text)
    XCTAssertTrue(text.contains("Authorization: Bearer <secret from env:EXAMPLE_TOKEN>"), text)
    XCTAssertTrue(text.contains("secret: available"), text)

    let (t2, a2) = Explain.render(
      config: c, url: "https://basic.example.com:8443/", method: "POST", environment: [:])
    XCTAssertTrue(a2)
    XCTAssertTrue(t2.contains("upstream: https://basic.example.com:8443/"), t2)
    XCTAssertTrue(t2.contains("connect-to: 10.0.0.9:443"), t2)
    XCTAssertTrue(t2.contains("secret: NOT available: env:MISSING_PASSWORD is not set"), t2)

    let (t3, _) = Explain.render(
      config: c, url: "http://inline.example.com/", method: "GET", environment: [:])
    XCTAssertFalse(t3.contains(literal), t3)
    XCTAssertTrue(t3.contains("X-Api-Key: <secret from inline secret>"), t3)

    let (t4, _) = Explain.render(
      config: c, url: "http://storage.googleapis.com/b/o", method: "GET", environment: [:])
    XCTAssertTrue(t4.contains("scopes: https://www.googleapis.com/auth/devstorage.read_only"), t4)

    let (t5, _) = Explain.render(
      config: c, url: "http://svc-abc.a.run.app/path?q", method: "GET", environment: [:])
    XCTAssertTrue(t5.contains("X-Serverless-Authorization: Bearer <OIDC ID token>"), t5)
    XCTAssertTrue(t5.contains("audience: https://svc-abc.a.run.app (audience origin)"), t5)
  }

  func testExplainRefused() throws {
    let c = try config
    let (t1, a1) = Explain.render(
      config: c, url: "http://evil.example.com/", method: "GET", environment: [:])
    XCTAssertFalse(a1)
    XCTAssertTrue(t1.contains("route #6 evil.example.com (proxy.conf:21)"), t1)
    XCTAssertTrue(t1.contains("refused: 403 denied"), t1)

    let (t2, a2) = Explain.render(
      config: c, url: "http://nowhere.example.org/", method: "GET", environment: [:])
    XCTAssertFalse(a2)
    XCTAssertTrue(t2.contains("refused: 403 no_route"), t2)
    XCTAssertTrue(
      t2.contains("no route for host \"nowhere.example.org\": credproxy is deny-by-default"), t2)

    let (t3, a3) = Explain.render(
      config: c, url: "http://api.example.com/v1", method: "DELETE", environment: [:])
    XCTAssertFalse(a3)
    XCTAssertTrue(t3.contains("refused: 405 method_not_allowed"), t3)
    XCTAssertTrue(t3.contains("allowed: GET, POST"), t3)

    let (t4, a4) = Explain.render(config: c, url: "ftp://x/", method: "GET", environment: [:])
    XCTAssertFalse(a4)
    XCTAssertTrue(t4.hasPrefix("cannot explain \"ftp://x/\": unsupported URL scheme"), t4)
    let (t5, a5) = Explain.render(
      config: c, url: "api.example.com/v1", method: "GET", environment: [:])
    XCTAssertFalse(a5)
    XCTAssertTrue(t5.contains("is not an absolute URL"), t5)
  }
}
