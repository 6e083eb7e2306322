import XCTest

@testable import CredproxyConfig

/// `ca-cert` / `ca-key` and the `intercept` route flag.
final class LocalCAConfigTests: XCTestCase {
  func testCACertAndKeyAreResolvedAgainstTheConfigAndComeTogether() throws {
    let c = try ConfigParser.parse(
      text: "ca-cert ca/ca.pem\nca-key /etc/credproxy/ca-key.pem\n", path: "/srv/conf/proxy.conf")
    XCTAssertEqual(c.caCert, "/srv/conf/ca/ca.pem")
    XCTAssertEqual(c.caKey, "/etc/credproxy/ca-key.pem")
    XCTAssertNil(try parse("listen 127.0.0.1:0\n").caCert)

    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:0\nca-cert ca.pem\n"),
      [
        "proxy.conf:2:1: ca-cert without ca-key: the local CA needs both its certificate and its key; expected ca-cert PATH and ca-key PATH (credproxy ca init writes both)"
      ])
    XCTAssertEqual(
      diagnostics("ca-key k.pem\n"),
      [
        "proxy.conf:1:1: ca-key without ca-cert: the local CA needs both its certificate and its key; expected ca-cert PATH and ca-key PATH (credproxy ca init writes both)"
      ])
    let twice = diagnostics("ca-cert a.pem\nca-cert b.pem\nca-key k.pem\n")
    XCTAssertEqual(twice.count, 1)
    XCTAssertTrue(twice[0].hasPrefix("proxy.conf:2:1: "), twice[0])
    XCTAssertTrue(
      diagnostics("route a.example {\n  ca-key k.pem\n}\n")[0].contains("only valid at top level"))
  }

  func testInterceptFlag() throws {
    let c = try parse(
      "route a.example.com {\n  intercept\n  auth bearer env:T\n}\nroute b.example.com {\n  tunnel\n}\n"
    )
    XCTAssertTrue(c.routes[0].intercept)
    XCTAssertFalse(c.routes[0].tunnel)
    XCTAssertFalse(c.routes[1].intercept)
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  tunnel\n  intercept\n}\n"),
      [
        "proxy.conf:3:3: a route cannot have both tunnel and intercept: tunnel passes the caller's TLS through untouched, intercept terminates it with a leaf from the local CA; expected one of them (give each its own route)"
      ])
    XCTAssertEqual(diagnostics("route a.example.com {\n  intercept\n  tunnel\n}\n").count, 1)
    XCTAssertTrue(
      diagnostics("route a.example.com {\n  intercept on\n}\n")[0].contains("intercept"))
    XCTAssertTrue(diagnostics("intercept\n")[0].contains("only valid inside a route block"))
  }

  func testNameConstraintsFromInterceptRoutes() throws {
    let c = try parse(
      """
      route *.googleapis.com api.example.com:443 {
        intercept
      }
      route 10.0.0.1 [::1] api.example.com {
        intercept
      }
      route other.example.com {
        auth none
      }
      route *.denied.example {
        intercept
        deny
      }
      """)
    let nc = c.interceptNameConstraints
    XCTAssertEqual(nc.interceptRoutes, 2)
    XCTAssertTrue(nc.constrainable)
    XCTAssertEqual(
      nc.names,
      [.subdomains("googleapis.com"), .dns("api.example.com"), .ip("10.0.0.1"), .ip("::1")])
    XCTAssertTrue(c.warnings.isEmpty, "\(c.warnings)")

    let open = try parse("route a.example.com {\n  intercept\n}\nroute * {\n  intercept\n}\n")
    XCTAssertFalse(open.interceptNameConstraints.constrainable)
    XCTAssertEqual(
      open.interceptNameConstraints.blockers,
      [InterceptNameConstraints.Blocker(route: 2, line: 4, pattern: "*")])
    XCTAssertEqual(
      open.warnings.map(\.description),
      [
        "proxy.conf:4:1: route #2 intercepts *, which cannot be name-constrained: the local CA made by `credproxy ca init` for this config gets no name constraints, so its key could sign a certificate for any site; name the intercepted hosts (exact names or *.suffix) to constrain it"
      ])
    XCTAssertFalse(
      try parse("route a.example.com {\n  auth none\n}\n").interceptNameConstraints.constrainable)
  }
}
