import AuditReport
import CredproxyConfig
import Foundation
import XCTest

final class TighteningTests: XCTestCase {
  let config = """
    listen 127.0.0.1:0
    client deploy {
      token env:DEPLOY_TOKEN
    }
    client tests {
      token env:TESTS_TOKEN
    }
    client idle {
      token env:IDLE_TOKEN
    }

    route *.googleapis.com {
      auth OAuth2
    }
    route api.example.com {
      auth bearer env:API_TOKEN
      methods GET POST DELETE   # a comment
      allow deploy tests idle
    }
    route github.com:443 {
      tunnel
      allow deploy tests
    }
    route old.example.com {
      auth none
    }
    route metadata.google.internal {
      deny
    }

    """

  func entry(
    _ client: String, _ method: String, _ host: String, _ path: String, route: Int?,
    decision: String = "allow", reason: String? = nil, scheme: String = "http", port: Int? = nil
  ) -> AuditEntry {
    var e = AuditEntry()
    e.time = 1_795_701_600
    e.client = client
    e.method = method
    e.host = host
    e.port = port
    e.path = path
    e.route = route
    e.decision = decision
    e.reason = reason
    e.scheme = scheme
    return e
  }

  func testProposalNarrowsSplitsFlagsAndStillParses() throws {
    let parsed = try ConfigParser.parse(text: config, path: "proxy.conf")
    let usage = UsageCollector(since: nil)
    for i in 0..<30 {
      usage.add(
        entry("deploy", "GET", "storage.googleapis.com", "/storage/v1/b/b\(i % 5)/o", route: 1))
      usage.add(
        entry("deploy", "POST", "storage.googleapis.com", "/upload/storage/v1/b/b1/o", route: 1))
      usage.add(entry("tests", "GET", "pubsub.googleapis.com", "/v1/projects/p/topics", route: 1))
      usage.add(entry("tests", "GET", "api.example.com", "/v1/things/\(i)", route: 2))
      usage.add(
        entry("deploy", "CONNECT", "github.com", "", route: 3, scheme: "connect", port: 443))
    }
    // Refusals do not count as use: neither for methods nor for allow lists.
    usage.add(
      entry(
        "idle", "DELETE", "api.example.com", "/v1/x", route: 2, decision: "deny",
        reason: "client_not_allowed"))
    usage.add(
      entry(
        "tests", "DELETE", "api.example.com", "/v1/x", route: 2, decision: "report",
        reason: "method_not_allowed"))
    // A limit still means the route was used.
    usage.add(
      entry(
        "deploy", "GET", "api.example.com", "/v1/things/1", route: 2, decision: "deny",
        reason: "rate_limited"))

    let p = Tightening.propose(config: parsed, text: config, usage: usage, window: "in the test")
    XCTAssertNil(p.validationErrors, p.validationErrors ?? "")
    XCTAssertEqual(p.unusedRoutes, [4])
    XCTAssertEqual(p.unusedClients, ["idle"])
    let next = try ConfigParser.parse(text: p.text, path: "proxy.conf")
    let router = Router(routes: next.routes)

    func outcome(_ client: String, _ method: String, _ host: String, _ path: String) -> String {
      switch router.decide(
        method: method, host: host, explicitPort: nil, path: path, client: client)
      {
      case .forward(let m): return "forward \(m.route.auth.typeName)"
      case .refuse(let code, _, _): return code.rawValue
      }
    }
    // Everything used still goes through, with the same kind of credential.
    XCTAssertEqual(
      outcome("deploy", "GET", "storage.googleapis.com", "/storage/v1/b/b9/o"), "forward OAuth2")
    XCTAssertEqual(
      outcome("deploy", "POST", "storage.googleapis.com", "/upload/storage/v1/b/b1/o"),
      "forward OAuth2")
    XCTAssertEqual(
      outcome("tests", "GET", "pubsub.googleapis.com", "/v1/projects/p/topics"), "forward OAuth2")
    XCTAssertEqual(outcome("tests", "GET", "api.example.com", "/v1/things/99"), "forward bearer")
    XCTAssertEqual(outcome("deploy", "GET", "api.example.com", "/v1/things/1"), "forward bearer")
    // What nobody used is refused now.
    XCTAssertEqual(
      outcome("tests", "GET", "storage.googleapis.com", "/storage/v1/b/b1/o"), "client_not_allowed")
    XCTAssertEqual(outcome("deploy", "GET", "compute.googleapis.com", "/compute/v1"), "denied")
    XCTAssertEqual(
      outcome("deploy", "DELETE", "storage.googleapis.com", "/storage/v1/b/b1/o"),
      "method_not_allowed")
    XCTAssertEqual(
      outcome("tests", "DELETE", "api.example.com", "/v1/things/1"), "method_not_allowed")
    XCTAssertEqual(outcome("idle", "GET", "api.example.com", "/v1/things/1"), "client_not_allowed")
    XCTAssertEqual(outcome("tests", "GET", "api.example.com", "/admin"), "denied")
    guard
      case .refuse(.clientNotAllowed, _, _) = router.decideTunnel(
        host: "github.com", port: 443, client: "tests")
    else { return XCTFail("the tunnel's allow list keeps only the client that used it") }
    guard case .forward = router.decideTunnel(host: "github.com", port: 443, client: "deploy")
    else { return XCTFail("the tunnel stays open to deploy") }

    XCTAssertTrue(
      p.text.contains(
        "route storage.googleapis.com/storage/v1/b storage.googleapis.com/upload/storage/v1 {"),
      p.text)
    XCTAssertTrue(
      p.text.contains("# credproxy report: route #4 had no requests in the test"), p.text)
    XCTAssertTrue(
      p.text.contains("# credproxy report: client idle used no route in the test"), p.text)
    XCTAssertTrue(
      p.text.contains("route metadata.google.internal {\n  deny\n}"), "deny routes untouched")
    XCTAssertFalse(p.text.contains("DELETE"), p.text)
  }

  func testNothingToTightenGivesNoDiff() throws {
    let text = """
      route api.example.com/v1 {
        auth none
        methods GET
      }

      """
    let parsed = try ConfigParser.parse(text: text, path: "proxy.conf")
    let usage = UsageCollector(since: nil)
    usage.add(entry("x", "GET", "api.example.com", "/v1/a", route: 1))
    usage.add(entry("x", "GET", "api.example.com", "/v1/b/c", route: 1))
    usage.add(entry("x", "GET", "api.example.com", "/v1/d", route: 1))
    usage.add(entry("x", "GET", "api.example.com", "/v1/e", route: 1))
    usage.add(entry("x", "GET", "api.example.com", "/v1/f", route: 1))
    let p = Tightening.propose(config: parsed, text: text, usage: usage, window: "w")
    XCTAssertEqual(p.text, text)
    XCTAssertEqual(p.changes, [])
  }
  func testReportModeRouteKeepsReportingWhatItNoLongerAllows() throws {
    let text = """
      route *.example.com {
        auth none
        mode report
      }

      """
    let parsed = try ConfigParser.parse(text: text, path: "proxy.conf")
    let usage = UsageCollector(since: nil)
    usage.add(entry("x", "GET", "a.example.com", "/v1/items", route: 1))
    let p = Tightening.propose(config: parsed, text: text, usage: usage, window: "w")
    XCTAssertNil(p.validationErrors, p.validationErrors ?? "")
    XCTAssertTrue(p.text.contains("route a.example.com/v1/items {"), p.text)
    XCTAssertTrue(p.text.contains("route *.example.com {\n  mode report\n  deny\n}"), p.text)
  }

  /// An audit log is input like any other: a line can say anything. Hosts and methods the
  /// proxy could never have written (spaces, newlines, braces: config syntax) are not records,
  /// so they can neither add patterns nor directives to the proposal; a method the proxy does
  /// accept but the config lexer reads as a comment (`#`) is written quoted.
  func testHostileLogLinesCannotWidenTheProposal() throws {
    let text = """
      client ci {
        token env:CI_TOKEN
      }
      route *.example.com {
        auth bearer env:EXAMPLE_TOKEN
        allow ci
      }

      """
    let parsed = try ConfigParser.parse(text: text, path: "proxy.conf")
    let usage = UsageCollector(since: nil)
    XCTAssertTrue(usage.add(entry("ci", "GET", "a.example.com", "/v1/x", route: 1)))
    XCTAssertTrue(usage.add(entry("ci", "G#T", "a.example.com", "/v1/x", route: 1)))
    for host in [
      "attacker.net b.example.com", "b.example.com {\n  auth none\n}\nroute evil.com c.example.com",
      "evil.com#.example.com", "B.EXAMPLE.COM", "d.example.com.", "[::1]", "",
    ] {
      XCTAssertFalse(usage.add(entry("ci", "GET", host, "/v1/y", route: 1)), host)
    }
    for method in ["GET }\nroute evil.com {", "GET\n  auth none", "GET POST", ""] {
      XCTAssertFalse(usage.add(entry("ci", method, "a.example.com", "/v1/y", route: 1)), method)
    }
    XCTAssertTrue(
      usage.add(
        entry("ci", "GET", "::1", "/v1/y", route: nil, decision: "deny", reason: "no_route")))
    let p = Tightening.propose(config: parsed, text: text, usage: usage, window: "w")
    XCTAssertNil(p.validationErrors, p.validationErrors ?? "")
    let next = try ConfigParser.parse(text: p.text, path: "proxy.conf")
    for route in next.routes {
      for pattern in route.patterns {
        switch pattern.host {
        case .exact(let h): XCTAssertTrue(h.hasSuffix(".example.com"), p.text)
        case .suffix(let s): XCTAssertEqual(s, "example.com", p.text)
        case .any: XCTFail(p.text)
        }
      }
      if !route.deny { XCTAssertEqual(route.methods, ["GET", "G#T"], p.text) }
    }
    XCTAssertFalse(p.text.contains("evil") || p.text.contains("attacker"), p.text)
  }

  /// Whatever a log claims (a forged line, or a log from an older config whose route numbers
  /// meant other routes), the proposal only ever narrows: `methods` and `allow` stay within the
  /// route's own, for a narrowed route and for every route a wide one is split into.
  func testProposalNeverAllowsMoreMethodsOrClientsThanTheRoute() throws {
    let text = """
      client alice {
        token env:ALICE_TOKEN
      }
      client bob {
        token env:BOB_TOKEN
      }
      route api.example.com/v1 {
        auth bearer env:API_TOKEN
        methods GET
        allow alice
      }
      route *.example.com {
        auth bearer env:EXAMPLE_TOKEN
        methods GET HEAD
        allow alice
      }
      route *.example.org {
        auth none
      }

      """
    let parsed = try ConfigParser.parse(text: text, path: "proxy.conf")
    let usage = UsageCollector(since: nil)
    usage.add(entry("alice", "GET", "api.example.com", "/v1/a", route: 1))
    usage.add(entry("bob", "DELETE", "api.example.com", "/v1/a", route: 1))
    usage.add(entry("alice", "GET", "a.example.com", "/v2/items", route: 2))
    usage.add(entry("bob", "POST", "a.example.com", "/v2/items", route: 2))
    usage.add(entry("bob", "PUT", "b.example.com", "/v3/things", route: 2))
    usage.add(entry("alice", "GET", "a.example.org", "/v1", route: 3))
    var anonymous = entry("x", "GET", "c.example.org", "/v4", route: 3)
    anonymous.client = nil  // never written while clients are defined
    usage.add(anonymous)
    let p = Tightening.propose(config: parsed, text: text, usage: usage, window: "w")
    XCTAssertNil(p.validationErrors, p.validationErrors ?? "")
    let next = try ConfigParser.parse(text: p.text, path: "proxy.conf")
    for route in next.routes where !route.deny {
      if route.patterns.contains(where: { $0.description.contains("example.org") }) { continue }
      XCTAssertTrue(route.methods?.isSubset(of: ["GET", "HEAD"]) ?? false, p.text)
      XCTAssertEqual(route.allow ?? [], ["alice"], p.text)
    }
    let router = Router(routes: next.routes)
    for (client, method, host, path) in [
      ("bob", "DELETE", "api.example.com", "/v1/a"), ("bob", "POST", "a.example.com", "/v2/items"),
      ("alice", "PUT", "b.example.com", "/v3/things"),
      ("bob", "GET", "b.example.com", "/v3/things"),
      ("alice", "GET", "c.example.org", "/v4"),
    ] {
      guard
        case .refuse = router.decide(
          method: method, host: host, explicitPort: nil, path: path, client: client)
      else { return XCTFail("\(client) \(method) \(host)\(path) passes:\n\(p.text)") }
    }
    guard
      case .forward = router.decide(
        method: "GET", host: "a.example.com", explicitPort: nil, path: "/v2/items", client: "alice")
    else { return XCTFail(p.text) }
  }
}
