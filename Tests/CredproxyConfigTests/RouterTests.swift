import HTTP1
import XCTest

@testable import CredproxyConfig

final class RouterTests: XCTestCase {
  func router(_ text: String) throws -> Router {
    Router(routes: try ConfigParser.parse(text: text).routes)
  }

  /// "forward #n", or "status code".
  func outcome(
    _ r: Router, _ host: String, port: Int? = nil, path: String = "/", method: String = "GET"
  ) -> String {
    switch r.decide(method: method, host: host, explicitPort: port, path: path) {
    case .forward(let m): return "forward #\(m.number)"
    case .refuse(let code, _, _): return "\(code.status) \(code)"
    }
  }

  func testExactSuffixAndAny() throws {
    let r = try router(
      """
      route api.example.com {
      }
      route *.example.com {
      }
      route * {
        deny
      }
      """)
    XCTAssertEqual(outcome(r, "api.example.com"), "forward #1")
    XCTAssertEqual(outcome(r, "API.Example.com."), "forward #1")
    XCTAssertEqual(outcome(r, "a.example.com"), "forward #2")
    XCTAssertEqual(outcome(r, "a.b.example.com"), "forward #2")
    XCTAssertEqual(outcome(r, "example.com"), "403 denied")
    XCTAssertEqual(outcome(r, "badexample.com"), "403 denied")
    XCTAssertEqual(outcome(r, "other.org"), "403 denied")
  }

  func testNoRouteDeniesByDefault() throws {
    let r = try router("route api.example.com {\n}\n")
    guard
      case .refuse(let code, let reason, let match) =
        r.decide(method: "GET", host: "x.example.com", explicitPort: nil, path: "/")
    else { return XCTFail("expected refusal") }
    XCTAssertEqual(code.status, 403)
    XCTAssertEqual(code.rawValue, "no_route")
    XCTAssertEqual(reason, "no route for host \"x.example.com\": credproxy is deny-by-default")
    XCTAssertNil(match)
    XCTAssertEqual(outcome(Router(routes: []), "a"), "403 no_route")
  }

  func testPorts() throws {
    let r = try router(
      """
      route a.example.com:8443 {
      }
      route b.example.com:443 {
      }
      route c.example.com:80 {
        upstream http
      }
      route d.example.com {
      }
      """)
    XCTAssertEqual(outcome(r, "a.example.com", port: 8443), "forward #1")
    XCTAssertEqual(outcome(r, "a.example.com"), "403 no_route")
    XCTAssertEqual(outcome(r, "a.example.com", port: 443), "403 no_route")
    // Without an explicit port the upstream's default applies.
    XCTAssertEqual(outcome(r, "b.example.com"), "forward #2")
    XCTAssertEqual(outcome(r, "b.example.com", port: 443), "forward #2")
    XCTAssertEqual(outcome(r, "b.example.com", port: 80), "403 no_route")
    XCTAssertEqual(outcome(r, "c.example.com"), "forward #3")
    XCTAssertEqual(outcome(r, "c.example.com", port: 443), "403 no_route")
    // No port in the pattern: any port.
    XCTAssertEqual(outcome(r, "d.example.com", port: 1234), "forward #4")
  }

  func testPathSegments() throws {
    let r = try router(
      """
      route api.example.com/v1 {
      }
      route api.example.com/static/ {
      }
      route api.example.com/admin {
        deny
      }
      """)
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1"), "forward #1")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1/x/y"), "forward #1")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1?q=1"), "forward #1")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1#frag"), "forward #1")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v10"), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v"), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/"), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/static/a.css"), "forward #2")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/static/"), "forward #2")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/static"), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/staticx"), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: ""), "403 no_route")
    XCTAssertEqual(outcome(r, "api.example.com", path: "*"), "403 no_route")
  }

  func testEquivalentPathSpellingsCannotBypassRules() throws {
    let r = try router(
      """
      route api.example.com/admin {
        deny
      }
      route api.example.com {
      }
      """)
    for path in [
      "/admin", "/%61dmin", "/%61%64min/x", "//admin", "/x/../admin", "/./admin", "/%2e%2e/admin",
      "/admin/", "/v1/%2E%2E/admin?x",
    ] {
      XCTAssertEqual(outcome(r, "api.example.com", path: path), "403 denied", path)
    }
    XCTAssertEqual(outcome(r, "api.example.com", path: "/administrator"), "forward #2")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/admin%2Fx"), "403 denied")
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1/.well-known"), "forward #2")
  }

  /// Deny matches broadly: every spelling some upstream reads as under `/admin` is refused.
  func testDenyPathMatchesEveryServerReading() throws {
    let r = try router(
      """
      route api.example.com/admin {
        deny
      }
      route api.example.com {
      }
      """)
    for path in [
      "/admin%2fusers", "/admin%2Fusers", "/admin;x/y", "/admin;jsessionid=1", "/ADMIN/x",
      "/Admin", "/admin%20/x", "/admin%09/x", "/%20admin/x", "/admin./x", "/admin.%20/x",
      "/%2fadmin/x", "/%5cadmin/x", "/admin%5cx", "/%41DMIN", "/admin%252fx", "/%2561dmin/x",
      "/x/..;/admin", "/x/%2e%2e;/admin", "/x/..%3b/admin", "/adm%69n;a=b/c",
      "/%25252561dmin",
    ] {
      XCTAssertEqual(outcome(r, "api.example.com", path: path), "403 denied", path)
    }
    for path in ["/administrator", "/admins/x", "/x/admin", "/", "/ad%20min"] {
      XCTAssertEqual(outcome(r, "api.example.com", path: path), "forward #2", path)
    }
  }

  /// Allow matches narrowly: a path is inside an allow route's prefix only when it is under
  /// every reading.
  func testAllowPathMatchesOnlyUnderEveryReading() throws {
    let r = try router(
      """
      route api.example.com/public {
      }
      route api.example.com/files/ {
      }
      """)
    for path in [
      "/public", "/public/x", "/public/a%2Fb", "/%70ublic/x", "/public/x;y",
      "/files/", "/files/a",
    ] {
      XCTAssertNotEqual(outcome(r, "api.example.com", path: path), "403 no_route", path)
    }
    for path in [
      "/public%2fx", "/PUBLIC/x", "/public;v=1", "/public;x/..;/admin", "/public/..;/admin",
      "/public%20/x",
      "/public/%252e%252e/admin", "/public/x%252F..%252F..%252Fadmin", "/public%5cx",
      "/public/x/..%3B/admin", "/public./x", "/files", "/files%2f",
    ] {
      XCTAssertEqual(outcome(r, "api.example.com", path: path), "403 no_route", path)
    }
  }

  /// `explain` takes the router's decision.
  func testExplainAgreesWithRouterOnPathSpellings() throws {
    let config = try ConfigParser.parse(
      text: "route api.example.com/admin {\n  deny\n}\nroute api.example.com {\n}\n")
    for path in ["/admin%2fusers", "/ADMIN/x", "/admin;x/y", "/%2fadmin/x"] {
      let (text, allowed) = Explain.render(
        config: config, url: "https://api.example.com\(path)", method: "GET", environment: [:])
      XCTAssertFalse(allowed, text)
      XCTAssertTrue(text.contains("refused: 403 denied"), text)
    }
  }

  func testIPAddresses() throws {
    let r = try router(
      """
      route 169.254.169.254 {
        deny
      }
      route [::1]:8080 {
      }
      route * {
      }
      """)
    for host in [
      "169.254.169.254", "2852039166", "0xa9.0xfe.0xa9.0xfe", "169.254.43518",
      "0251.0376.0251.0376",
    ] {
      XCTAssertEqual(outcome(r, host), "403 denied", host)
    }
    XCTAssertEqual(outcome(r, "::1", port: 8080), "forward #2")
    XCTAssertEqual(outcome(r, "[::1]", port: 8080), "forward #2")
    XCTAssertEqual(outcome(r, "0:0::0:1", port: 8080), "forward #2")
    XCTAssertEqual(outcome(r, "::2", port: 8080), "forward #3")
    XCTAssertEqual(outcome(r, "1password.com"), "forward #3")
  }

  /// A deny route for an IPv4 address matches it in every spelling, including the IPv6 forms
  /// that carry it (IPv4-mapped, NAT64 well-known prefix, 6to4).
  func testIPv4DenyMatchesEverySpelling() throws {
    let r = try router(
      """
      route 10.1.2.3 {
        deny
      }
      route 127.0.0.1:8080/secret {
        deny
      }
      route * {
      }
      """)
    for host in [
      "10.1.2.3", "10.1.2.3.", "167838211", "012.1.2.3", "0xa.1.2.3", "10.1.515", "0xa010203",
      "::ffff:10.1.2.3", "[::ffff:a01:203]", "[64:ff9b::a01:203]", "[64:ff9b::10.1.2.3]",
      "64:FF9B::A01:203", "[2002:0a01:0203::]", "2002:a01:203:1::5", "[2002:a01:203::1]",
    ] {
      XCTAssertEqual(outcome(r, host), "403 denied", host)
    }
    for host in [
      "127.0.0.1", "2130706433", "127.1", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]",
      "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]",
    ] {
      XCTAssertEqual(outcome(r, host, port: 8080, path: "/secret/x"), "403 denied", host)
      XCTAssertEqual(outcome(r, host, port: 8080, path: "/public"), "forward #3", host)
    }
    for host in ["10.1.2.4", "[64:ff9b::a01:204]", "[64:ff9b:1::a01:203]", "[2003:a01:203::]"] {
      XCTAssertEqual(outcome(r, host), "forward #3", host)
    }
  }

  /// An allow route for an IPv4 address matches its IPv4 spellings and IPv4-mapped form, not the
  /// NAT64 or 6to4 addresses (those dial an IPv6 address; the SSRF guard vets them).
  func testIPv4AllowDoesNotMatchTranslatedIPv6() throws {
    let r = try router("route 10.1.2.3 {\n}\n")
    for host in ["10.1.2.3", "167838211", "10.1.515", "[::ffff:10.1.2.3]", "10.1.2.3."] {
      XCTAssertEqual(outcome(r, host), "forward #1", host)
    }
    for host in ["[64:ff9b::a01:203]", "[64:ff9b::10.1.2.3]", "[2002:a01:203::]"] {
      XCTAssertEqual(outcome(r, host), "403 no_route", host)
    }
  }

  /// A deny route written as a NAT64 or 6to4 address also denies the IPv4 address it carries.
  func testTranslatedIPv6DenyMatchesItsIPv4() throws {
    let r = try router("route [64:ff9b::a01:203] {\n  deny\n}\nroute * {\n}\n")
    for host in ["10.1.2.3", "[64:ff9b::a01:203]", "[2002:a01:203::]", "167838211"] {
      XCTAssertEqual(outcome(r, host), "403 denied", host)
    }
    XCTAssertEqual(outcome(r, "10.1.2.4"), "forward #2")
  }

  /// The router and the SSRF side read a host with the same canonicaliser.
  func testCanonicalHost() {
    func c(_ s: String) -> String {
      let h = CanonicalHost(s)
      return h.address.map { "ip \($0)" } ?? "name \(h.text)"
    }
    XCTAssertEqual(c("API.Example.COM."), "name api.example.com")
    XCTAssertEqual(c("[::1]"), "ip ::1")
    XCTAssertEqual(c("[FE80::1%25eth0]"), "ip fe80::1")
    XCTAssertEqual(c("0x7f.1"), "ip 127.0.0.1")
    XCTAssertEqual(c("127.0.0.1."), "ip 127.0.0.1")
    XCTAssertEqual(c("1password.com"), "name 1password.com")
    XCTAssertEqual(c("1.2.3.4.5"), "name 1.2.3.4.5")
    XCTAssertEqual(CanonicalHost("[64:ff9b::a01:203]").reachedIPv4, 0x0A01_0203)
    XCTAssertEqual(CanonicalHost("2002:a01:203::").reachedIPv4, 0x0A01_0203)
    XCTAssertEqual(CanonicalHost("::ffff:10.1.2.3").reachedIPv4, 0x0A01_0203)
    XCTAssertEqual(CanonicalHost("10.1.2.3").reachedIPv4, 0x0A01_0203)
    XCTAssertNil(CanonicalHost("::1").reachedIPv4)
    XCTAssertNil(CanonicalHost("example.com").reachedIPv4)
  }

  func testFirstMatchWins() throws {
    let r = try router(
      """
      route api.example.com/v1/private {
        deny
      }
      route api.example.com {
        auth bearer env:A
      }
      route api.example.com {
        auth bearer env:B
      }
      """)
    XCTAssertEqual(outcome(r, "api.example.com", path: "/v1/private/x"), "403 denied")
    guard
      case .forward(let m) = r.decide(
        method: "GET", host: "api.example.com", explicitPort: nil, path: "/v1")
    else { return XCTFail() }
    XCTAssertEqual(m.index, 1)
    XCTAssertEqual(m.route.auth, .bearer(.env("A")))
  }

  func testDenyReason() throws {
    let r = try router("route a.example.com {\n}\nroute evil.example.com {\n  deny\n}\n")
    guard
      case .refuse(let code, let reason, let match) =
        r.decide(method: "GET", host: "evil.example.com", explicitPort: nil, path: "/")
    else { return XCTFail() }
    XCTAssertEqual(code.status, 403)
    XCTAssertEqual(code.rawValue, "denied")
    XCTAssertEqual(reason, "denied by route #2 evil.example.com (line 3)")
    XCTAssertEqual(match?.index, 1)
  }

  func testMethods() throws {
    let r = try router("route api.example.com {\n  methods get head\n}\n")
    XCTAssertEqual(outcome(r, "api.example.com", method: "GET"), "forward #1")
    XCTAssertEqual(outcome(r, "api.example.com", method: "HEAD"), "forward #1")
    guard
      case .refuse(let code, let reason, let match) =
        r.decide(method: "DELETE", host: "api.example.com", explicitPort: nil, path: "/")
    else { return XCTFail() }
    XCTAssertEqual(code.status, 405)
    XCTAssertEqual(code.rawValue, "method_not_allowed")
    XCTAssertEqual(
      reason,
      "method \"DELETE\" is not allowed by route #1 api.example.com (line 1); allowed: GET, HEAD")
    XCTAssertEqual(match?.number, 1)
  }

  func testDecideWithAuthority() throws {
    let r = try router("route [::1]:8443 {\n  upstream \"HTTP\"\n}\n")
    let a = Authority(host: "::1", port: 8443, isIPv6: true)
    guard case .forward(let m) = r.decide(method: "GET", authority: a, path: "/") else {
      return XCTFail()
    }
    XCTAssertEqual(m.route.upstream, .http)
  }

  func testUpstreamURL() throws {
    let c = try ConfigParser.parse(text: "route a.b {\n}\nroute c.d {\n  upstream http\n}\n")
    XCTAssertEqual(
      c.routes[0].upstreamURL(host: "a.b", explicitPort: nil, pathAndQuery: "/x?y"),
      "https://a.b:443/x?y")
    XCTAssertEqual(
      c.routes[0].upstreamURL(host: "::1", explicitPort: 8443, pathAndQuery: ""),
      "https://[::1]:8443/")
    XCTAssertEqual(
      c.routes[1].upstreamURL(host: "c.d", explicitPort: nil, pathAndQuery: "/"), "http://c.d:80/")
  }

  func testPathNormalizer() {
    func n(_ s: String) -> String {
      String(decoding: PathNormalizer.normalize(Array(s.utf8)), as: UTF8.self)
    }
    XCTAssertEqual(n("/a/./b/../c"), "/a/c")
    XCTAssertEqual(n("/a//b/"), "/a/b/")
    XCTAssertEqual(n("/../.."), "/")
    XCTAssertEqual(n("/%7e%2f%41"), "/~%2FA")
    XCTAssertEqual(n("/a/.."), "/")
    XCTAssertEqual(n("/a/b/.."), "/a/")
    XCTAssertEqual(n("/%zz"), "/%zz")
  }
}
