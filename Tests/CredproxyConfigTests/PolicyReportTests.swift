import XCTest

@testable import CredproxyConfig

final class PolicyReportTests: XCTestCase {
  let password = "pa55-w0rd-value"
  let token = "t0ken-value-xyz"
  let adminToken = "adm1n-t0ken"

  var config: ProxyConfig {
    get throws {
      try ConfigParser.parse(
        text: """
          listen 0.0.0.0:8080
          listen 127.0.0.1:8081 tls /nonexistent/cert.pem /nonexistent/key.pem
          audit-log stderr
          log-queries on
          admin 10.0.0.1:9090 token env:ADMIN_TOKEN
          shutdown-timeout 1m
          client alice {
            password env:ALICE_PW
            from 10.0.0.0/8
            max-concurrent 3
          }
          client ci {
            token "\(token)"
          }
          route api.example.com {
            allow alice
            rate 10/s burst 20
            max-concurrent 2
            auth bearer env:API_TOKEN
          }
          route git.example.com:22 {
            tunnel
            allow-private
            mode report
            allow ci
          }
          route open.example.com {
          }
          """, path: "proxy.conf")
    }
  }

  func testCheckReport() throws {
    let env = ["ALICE_PW": password, "ADMIN_TOKEN": adminToken]
    let text = CheckReport.render(try config, environment: env)
    for secret in [password, token, adminToken] { XCTAssertFalse(text.contains(secret), text) }
    let expected = [
      "listen: 0.0.0.0:8080, 127.0.0.1:8081 (tls /nonexistent/cert.pem /nonexistent/key.pem)",
      "audit-log: stderr",
      "log-queries: on (secret-looking parameters redacted)",
      "mode: enforce",
      "admin: 10.0.0.1:9090 (token env:ADMIN_TOKEN)",
      "shutdown-timeout: 1m",
      "clients (a caller that matches none is refused with 407):",
      "  alice  password env:ALICE_PW, from 10.0.0.0/8  3               7",
      "  ci     token inline secret                     -               12",
      "route policy:",
      "  #  clients       rate           max-concurrent  connect  allow-private  mode",
      "  1  alice         10/s burst 20  2               -        -              enforce",
      "  2  ci            -              -               tunnel   allow-private  report",
      "  3  every client  -              -               -        -              enforce",
      "warning: proxy.conf:1:8: listening on 0.0.0.0:8080 without tls: passwords would cross the network in clear; add `tls CERT KEY` to the listen line",
      "warning: proxy.conf:2:1: listen 127.0.0.1:8081 tls: /nonexistent/cert.pem cannot be read",
      "warning: proxy.conf:13:9: inline secret in the config file; prefer env:NAME or file:PATH",
      "3 routes, 0 credentials blocks, 2 clients, 6 warnings",
    ]
    let lines = text.split(separator: "\n").map(String.init)
    for line in expected { XCTAssertTrue(lines.contains(line), "missing: \(line)\n\(text)") }

    // Unset client and admin secrets are warnings that name the source.
    let bare = CheckReport.render(try config, environment: [:])
    XCTAssertTrue(
      bare.contains(
        "warning: proxy.conf:7:1: client \"alice\": password env:ALICE_PW is not set; the client cannot identify with its password until it is available"
      ), bare)
    XCTAssertTrue(
      bare.contains(
        "warning: proxy.conf:5:1: admin token env:ADMIN_TOKEN is not set; the admin listener refuses every request until it is available"
      ), bare)

    let plain = CheckReport.render(
      try ConfigParser.parse(text: "route a.b {\n}\n"), environment: [:])
    for line in [
      "clients: none (every caller is anonymous)", "admin: off", "audit-log: off", "  1  anyone",
    ] {
      XCTAssertTrue(plain.contains(line), "\(line)\n\(plain)")
    }
    XCTAssertTrue(plain.contains("1 route, 0 credentials blocks, 0 warnings"), plain)
  }

  func testExplainPolicy() throws {
    let c = try config
    let (t1, a1) = Explain.render(
      config: c, url: "http://api.example.com/x", method: "GET", environment: [:])
    XCTAssertTrue(a1)
    for line in [
      "  clients: alice (allow list)", "  rate: 10/s burst 20 per client",
      "  max-concurrent: 2 per client",
      "  mode: enforce",
    ] {
      XCTAssertTrue(t1.contains(line + "\n"), "\(line)\n\(t1)")
    }

    let (t2, a2) = Explain.render(
      config: c, url: "http://api.example.com/x", method: "GET", environment: [:], client: "alice")
    XCTAssertTrue(a2)
    XCTAssertTrue(t2.contains("  client alice: allowed"), t2)

    let (t3, a3) = Explain.render(
      config: c, url: "http://api.example.com/x", method: "GET", environment: [:], client: "ci")
    XCTAssertFalse(a3)
    XCTAssertTrue(t3.contains("refused: 403 client_not_allowed"), t3)
    XCTAssertTrue(
      t3.contains("client \"ci\" is not allowed by route #1 api.example.com (line 15)"), t3)
    XCTAssertTrue(t3.contains("  clients: alice (allow list)"), t3)

    let (t4, a4) = Explain.render(
      config: c, url: "http://api.example.com/x", method: "GET", environment: [:], client: "eve")
    XCTAssertFalse(a4)
    XCTAssertTrue(t4.contains("client eve is not defined"), t4)
    XCTAssertTrue(t4.contains("refused: 407 proxy_auth_required"), t4)

    let (t5, a5) = Explain.render(
      config: c, url: "http://open.example.com/", method: "GET", environment: [:], client: "ci")
    XCTAssertTrue(a5)
    XCTAssertTrue(t5.contains("  clients: every client"), t5)
    XCTAssertTrue(t5.contains("  rate: unlimited"), t5)
  }

  func testExplainTunnelAndReportMode() throws {
    let c = try config
    let (t1, a1) = Explain.render(
      config: c, url: "https://git.example.com:22", method: "connect", environment: [:],
      client: "ci")
    XCTAssertTrue(a1, t1)
    XCTAssertTrue(t1.contains("allowed: tunnel"), t1)
    XCTAssertTrue(t1.contains("  dials: git.example.com:22"), t1)
    XCTAssertTrue(t1.contains("auth: none (a tunnel carries the caller's own TLS"), t1)
    XCTAssertTrue(t1.contains("  mode: report"), t1)
    XCTAssertTrue(t1.contains("  allow-private: private addresses may be dialled"), t1)

    // Report mode lets a client the allow list would refuse through, and says so.
    let (t2, a2) = Explain.render(
      config: c, url: "https://git.example.com:22", method: "CONNECT", environment: [:],
      client: "alice")
    XCTAssertTrue(a2, t2)
    XCTAssertTrue(
      t2.contains("allowed: mode report (enforce would refuse: 403 client_not_allowed)"), t2)

    let (t3, a3) = Explain.render(
      config: c, url: "https://api.example.com", method: "CONNECT", environment: [:])
    XCTAssertFalse(a3)
    XCTAssertTrue(t3.contains("refused: 403 tunnel_denied"), t3)
    XCTAssertTrue(t3.contains("CONNECT to \"api.example.com:443\" is not allowed"), t3)

    // No clients defined: a named client is just an anonymous caller.
    let open = try ConfigParser.parse(text: "route a.example.com {\n}\n")
    let (t4, a4) = Explain.render(
      config: open, url: "http://a.example.com/", method: "GET", environment: [:], client: "x")
    XCTAssertTrue(a4)
    XCTAssertTrue(t4.contains("no clients are defined, so every caller is anonymous"), t4)
    XCTAssertTrue(t4.contains("  clients: anyone (no clients are defined)"), t4)
  }
}
