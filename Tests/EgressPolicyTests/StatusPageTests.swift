import CredproxyConfig
import EgressPolicy
import Foundation
import XCTest

final class StatusPageTests: XCTestCase {
  func testRendersEscapedAndWithoutSecrets() throws {
    let literal = "sup3r-s3cret-literal"
    let config = try ConfigParser.parse(
      text: """
        client alice {
          password env:ALICE
        }
        route api.example.com/v1 {
          auth bearer env:EXAMPLE_TOKEN
          allow alice
          mode report
        }
        route inline.example.com {
          auth header X-Api-Key "\(literal)"
        }
        route tunnel.example.com:443 {
          tunnel
          connect-to 10.0.0.5:443
        }
        route storage.googleapis.com {
          auth OAuth2
          credentials ci
        }
        credentials ci {
          source metadata
        }
        """)
    let rows = StatusPage.rows(for: config)
    XCTAssertEqual(rows.count, 4)
    XCTAssertEqual(
      rows[0],
      StatusPage.RouteRow(
        number: 1, patterns: "api.example.com/v1", upstream: "https", authType: "bearer",
        credential: "env:EXAMPLE_TOKEN", allow: "alice", tunnel: false, mode: "report"))
    XCTAssertEqual(rows[1].credential, "inline secret")
    XCTAssertEqual(rows[2].upstream, "https via 10.0.0.5:443")
    XCTAssertTrue(rows[2].tunnel)
    XCTAssertEqual(rows[3].credential, "ci")
    XCTAssertEqual(rows[3].authType, "OAuth2")

    var evil = rows
    evil[0].patterns = "<script>alert('x')</script>"
    let html = StatusPage.render(
      version: "1.2.3 <b>", uptimeSeconds: 3725, now: 1_795_701_600,
      routes: evil,
      tokens: [
        StatusPage.TokenRow(
          credential: "ci", kind: "access token", scopesOrAudience: "https://a & b",
          fingerprint: "ab12",
          expiresInSeconds: 1800, lastError: nil),
        StatusPage.TokenRow(
          credential: "runner", kind: "ID token", scopesOrAudience: "https://svc", fingerprint: nil,
          expiresInSeconds: nil, lastError: "403 \"denied\" <iam>"),
      ],
      denials: [
        DenialLog.Entry(
          time: 1_795_701_599, client: nil, host: "evil\"><img>.example", reason: "no_route")
      ])
    XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>"))
    XCTAssertTrue(html.hasSuffix("</html>\n"))
    XCTAssertFalse(html.contains(literal))
    XCTAssertFalse(html.contains("<script>"))
    XCTAssertFalse(html.contains("<img>"))
    XCTAssertFalse(html.contains("<iam>"))
    XCTAssertFalse(html.contains("<b>"))
    XCTAssertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), html)
    XCTAssertTrue(html.contains("evil&quot;&gt;&lt;img&gt;.example"), html)
    XCTAssertTrue(html.contains("403 &quot;denied&quot; &lt;iam&gt;"), html)
    XCTAssertTrue(html.contains("https://a &amp; b"), html)
    XCTAssertTrue(html.contains("up 1h 2m"), html)
    XCTAssertTrue(html.contains("<td><span data-left=\"1800\">1800 s</span></td>"), html)
    XCTAssertTrue(html.contains("2026-11-26T13:59:59.000Z"), html)
    // Self-contained: no external references or scripts.
    for needle in ["<script", "src=", "href=", "http-equiv", "@import", "url("] {
      XCTAssertFalse(html.lowercased().contains(needle), needle)
    }
    // Empty tables say so.
    let empty = StatusPage.render(
      version: "v", uptimeSeconds: 5, now: 0, routes: [], tokens: [], denials: [])
    XCTAssertTrue(empty.contains("no routes: every request is refused"))
    XCTAssertTrue(empty.contains("no tokens"))
    XCTAssertEqual(StatusPage.esc("a&<>\"'b"), "a&amp;&lt;&gt;&quot;&#39;b")
  }

  func testDenialLogRing() {
    let log = DenialLog()
    XCTAssertEqual(log.capacity, 50)
    XCTAssertEqual(log.recent(), [])
    for i in 0..<120 {
      log.record(DenialLog.Entry(time: Double(i), client: "c", host: "h\(i)", reason: "r"))
    }
    let recent = log.recent()
    XCTAssertEqual(recent.count, 50)
    XCTAssertEqual(recent.first?.host, "h119")
    XCTAssertEqual(recent.last?.host, "h70")
    let small = DenialLog(capacity: 3)
    small.record(DenialLog.Entry(time: 0, client: nil, host: "a", reason: "x"))
    small.record(DenialLog.Entry(time: 1, client: nil, host: "b", reason: "x"))
    XCTAssertEqual(small.recent().map(\.host), ["b", "a"])
    DispatchQueue.concurrentPerform(iterations: 8) { i in
      for j in 0..<1000 {
        log.record(DenialLog.Entry(time: 0, client: nil, host: "\(i)-\(j)", reason: "x"))
      }
    }
    XCTAssertEqual(log.recent().count, 50)
  }
}
