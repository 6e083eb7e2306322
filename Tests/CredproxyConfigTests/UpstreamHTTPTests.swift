import XCTest

@testable import CredproxyConfig

/// `upstream-http 1.1|2|auto` in a route.
final class UpstreamHTTPTests: XCTestCase {
  func testValuesAndDefault() throws {
    let c = try parse(
      """
      route a.example.com {
        upstream-http 1.1
      }
      route b.example.com {
        upstream-http 2
      }
      route c.example.com {
        upstream-http AUTO
      }
      route d.example.com {
        auth none
      }
      """)
    XCTAssertEqual(c.routes.map(\.upstreamHTTP), [.http11, .http2, .auto, .default])
  }

  func testInvalidValueAndPlacement() {
    let d = diagnostics(
      """
      upstream-http 2
      route a.example.com {
        upstream-http 3
        upstream-http 1.1
      }
      """)
    XCTAssertEqual(d.count, 3, "\(d)")
    // The rest of that line lists every top-level directive.
    XCTAssertTrue(
      d[0].hasPrefix("proxy.conf:1:1: upstream-http is only valid inside a route block; "), d[0])
    XCTAssertEqual(
      Array(d.dropFirst()),
      [
        "proxy.conf:3:17: invalid upstream-http \"3\"; expected 1.1, 2 or auto",
        "proxy.conf:4:3: duplicate upstream-http (first set on line 3); expected at most one per route",
      ])
  }

  func testExplainAndCheckShowIt() throws {
    let c = try parse(
      """
      route a.example.com {
        upstream-http 2
        auth none
      }
      """)
    XCTAssertEqual(
      c.routes[0].upstreamHTTP.summary(for: .https),
      "HTTP/2 (ALPN; HTTP/1.1 if the server declines)")
    XCTAssertEqual(
      c.routes[0].upstreamHTTP.summary(for: .http), "HTTP/2 with prior knowledge (h2c)")
    XCTAssertEqual(UpstreamHTTPVersion.auto.summary(for: .http), "HTTP/1.1")
  }
}
