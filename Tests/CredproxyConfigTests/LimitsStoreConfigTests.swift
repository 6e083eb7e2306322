import XCTest

@testable import CredproxyConfig

final class LimitsStoreConfigTests: XCTestCase {
  func testDefaultsAndEveryOption() throws {
    let plain = try parse("limits-store redis redis.internal:6379\nroute a.b {\n}\n")
    let store = try XCTUnwrap(plain.limitsStore)
    XCTAssertEqual(store.host, "redis.internal")
    XCTAssertEqual(store.port, 6379)
    XCTAssertNil(store.password)
    XCTAssertEqual(store.prefix, "credproxy:")
    XCTAssertTrue(store.failOpen)
    XCTAssertEqual(store.timeoutMs, 100)
    XCTAssertEqual(store.leaseMs, 30_000)
    XCTAssertEqual(store.line, 1)
    XCTAssertEqual(store.description, "redis redis.internal:6379")

    let full = try XCTUnwrap(
      parse(
        "limits-store redis [::1]:7000 lease 5s timeout 20ms on-outage closed prefix fleet-a: password env:RP\n"
      ).limitsStore)
    XCTAssertEqual(full.host, "::1")
    XCTAssertEqual(full.description, "redis [::1]:7000")
    XCTAssertEqual(full.password, .env("RP"))
    XCTAssertEqual(full.prefix, "fleet-a:")
    XCTAssertFalse(full.failOpen)
    XCTAssertEqual(full.timeoutMs, 20)
    XCTAssertEqual(full.leaseMs, 5_000)
    XCTAssertNil(try parse("route a.b {\n}\n").limitsStore)
  }

  func testErrorsNameTheWordAndTheForm() {
    let usage =
      "limits-store redis HOST:PORT [password SECRET] [prefix P] [on-outage open|closed] [timeout DURATION] [lease DURATION]"
    XCTAssertEqual(
      diagnostics("limits-store redis a:1 timeout 5s timeout 6s\n"),
      ["proxy.conf:1:35: timeout given twice; expected it once"])
    XCTAssertEqual(
      diagnostics("limits-store redis a:1 lease 100ms\n"),
      ["proxy.conf:1:30: lease 100ms is out of range; expected 1s to 1h"])
    XCTAssertEqual(
      diagnostics("limits-store redis a:1 on-outage\n"),
      ["proxy.conf:1:24: on-outage needs a value; expected \(usage)"])
    XCTAssertEqual(
      diagnostics("limits-store redis\n"),
      ["proxy.conf:1:14: limits-store needs a store and its address; expected \(usage)"])
    XCTAssertEqual(
      diagnostics("route a.b {\n  limits-store redis a:1\n}\n").first?.hasPrefix(
        "proxy.conf:2:3: limits-store is only valid at top level"), true)
    XCTAssertEqual(
      diagnostics("limits-store redis a:1\nlimits-store redis b:2\n"),
      [
        "proxy.conf:2:1: duplicate limits-store (first set on line 1); expected at most one at top level"
      ])
  }
}

final class LimitsStoreReportTests: XCTestCase {
  func testCheckAndExplainSayTheLimitsAreFleetWide() throws {
    let c = try parse(
      "limits-store redis 10.0.0.5:6379 password env:RP on-outage closed\nroute a.b {\n  rate 10/s burst 20\n  max-concurrent 2\n}\n"
    )
    let check = CheckReport.render(c, environment: [:])
    XCTAssertTrue(
      check.contains(
        "limits-store: redis 10.0.0.5:6379, keys credproxy:…, on outage closed (refuse limited requests), wait at most 100ms, leases 30s, password env:RP\n"
      ), check)
    XCTAssertTrue(
      check.contains(
        "limits-store password env:RP is not set; serve refuses to start until it is available"),
      check)
    let (text, allowed) = Explain.render(
      config: c, url: "http://a.b/x", method: "GET", environment: [:])
    XCTAssertTrue(allowed)
    XCTAssertTrue(
      text.contains("  rate: 10/s burst 20 per client across all replicas (redis 10.0.0.5:6379)\n"),
      text)
    XCTAssertTrue(
      text.contains("  max-concurrent: 2 per client across all replicas (redis 10.0.0.5:6379)\n"),
      text)
    let local = CheckReport.render(try parse("route a.b {\n}\n"), environment: [:])
    XCTAssertTrue(local.contains("limits-store: none (rate and max-concurrent are per process)"))
  }
}
