import Synchronization
import XCTest

@testable import EgressPolicy

final class LiveStatsTests: XCTestCase {
  /// A clock the test moves.
  final class Clock: Sendable {
    let now = Mutex<Double>(1_000_000)
    func advance(_ s: Double) { now.withLock { $0 += s } }
    var read: @Sendable () -> Double { { [self] in now.withLock { $0 } } }
  }

  func testWindowsPercentilesAndExpiry() {
    let clock = Clock()
    let stats = LiveStats(routeNames: ["api", "gcs"], shards: 2, clock: clock.read)
    // 100 requests on api by alice over two shards: 98 fast (2 ms), 2 slow (400 ms), 3 failed.
    for i in 0..<100 {
      stats.record(
        routeIndex: 0, client: "alice", failed: i < 3, durationMs: i < 2 ? 400 : 2, shard: i % 2)
    }
    stats.record(routeIndex: nil, client: nil, failed: true, durationMs: 0.1, shard: 0)
    clock.advance(5)
    var snap = stats.snapshot()
    XCTAssertEqual(snap.routes.map(\.name), ["api", "none"])
    XCTAssertEqual(snap.clients.map(\.name), ["(anonymous)", "alice"])
    let api = snap.routes[0]
    XCTAssertEqual(api.lastMinute.requests, 100)
    XCTAssertEqual(api.lastMinute.errors, 3)
    XCTAssertEqual(api.lastMinute.errorRate, 0.03, accuracy: 1e-9)
    XCTAssertEqual(api.last15Minutes.requests, 100)
    // p50 within a factor √2 above 2 ms; p99 lands in the slow bucket.
    XCTAssertGreaterThanOrEqual(api.lastMinute.p50Ms!, 2)
    XCTAssertLessThan(api.lastMinute.p50Ms!, 2 * 1.42)
    XCTAssertGreaterThanOrEqual(api.lastMinute.p99Ms!, 400)
    XCTAssertLessThan(api.lastMinute.p99Ms!, 400 * 1.42)
    XCTAssertEqual(api.requestsPerSlot.count, LiveStats.slotCount)
    XCTAssertEqual(api.requestsPerSlot.last, 100)
    XCTAssertEqual(api.errorsPerSlot.last, 3)
    XCTAssertEqual(snap.clients[1].lastMinute.requests, 100)

    // Two minutes later: out of the 1-minute window, still in the 15-minute one.
    clock.advance(120)
    stats.record(routeIndex: 1, client: "bob", failed: false, durationMs: 10, shard: 1)
    snap = stats.snapshot()
    let later = snap.routes.first { $0.name == "api" }!
    XCTAssertEqual(later.lastMinute.requests, 0)
    XCTAssertNil(later.lastMinute.p50Ms)
    XCTAssertEqual(later.last15Minutes.requests, 100)
    XCTAssertEqual(later.requestsPerSlot.reduce(0, +), 100)
    XCTAssertEqual(snap.routes.first { $0.name == "gcs" }?.lastMinute.requests, 1)

    // After 15 minutes the series is gone.
    clock.advance(15 * 60)
    snap = stats.snapshot()
    XCTAssertEqual(snap.routes.map(\.name), [])

    // A reload's view writes into the same history, under the new labels.
    let reloaded = stats.reconfigured(routeNames: ["renamed"])
    reloaded.record(routeIndex: 0, client: "alice", failed: false, durationMs: 1, shard: 0)
    XCTAssertEqual(stats.snapshot().routes.map(\.name), ["renamed"])
  }

  func testRatesAreOverTheWindowLength() {
    let clock = Clock()
    let stats = LiveStats(routeNames: ["r"], shards: 1, clock: clock.read)
    // 6 slots of 10 requests each: 60 requests in the last minute.
    for _ in 0..<6 {
      for _ in 0..<10 {
        stats.record(routeIndex: 0, client: nil, failed: false, durationMs: 1, shard: 0)
      }
      clock.advance(10)
    }
    clock.advance(-0.001)
    let w = stats.snapshot().routes[0]
    XCTAssertEqual(w.lastMinute.requests, 60)
    XCTAssertEqual(w.lastMinute.perSecond, 1, accuracy: 0.001)
    // The 15-minute rate is over 15 minutes, not over the time there was traffic.
    XCTAssertEqual(w.last15Minutes.perSecond, 60.0 / 900, accuracy: 0.001)
    XCTAssertEqual(w.last15Minutes.requests, 60)
  }

  func testDashboardSectionsEscapeAndStaySelfContained() {
    let clock = Clock()
    let hostile = "x\"><script>alert(1)</script>"
    let stats = LiveStats(routeNames: [hostile], shards: 1, clock: clock.read)
    for i in 0..<7 {
      stats.record(routeIndex: 0, client: "<b>eve</b>", failed: i == 0, durationMs: 3, shard: 0)
    }
    let live = StatusPage.Live(
      traffic: stats.snapshot(), upstreamErrors: ["upstream_connect": 4, "<u>": 1],
      openConnections: 3, openTunnels: 2, limitsStore: (false, "redis <h>:6379"), refreshSeconds: 7)
    let html = StatusPage.render(
      version: "v", uptimeSeconds: 5, now: 0, routes: [], tokens: [], denials: [], live: live)
    for id in [
      "gauges", "open-connections", "open-tunnels", "traffic-routes", "traffic-clients",
      "upstream-errors", "limits-store", "routes", "tokens", "denials",
    ] {
      XCTAssertTrue(html.contains("id=\"\(id)\""), id)
    }
    XCTAssertFalse(html.contains("<script>alert"))
    XCTAssertFalse(html.contains("<b>eve"))
    XCTAssertFalse(html.contains("<u>"))
    XCTAssertFalse(html.contains("<h>"))
    XCTAssertTrue(html.contains("x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"))
    XCTAssertTrue(html.contains("&lt;b&gt;eve&lt;/b&gt;"))
    XCTAssertTrue(html.contains("<td class=\"n\">7</td>"), html)
    XCTAssertTrue(html.contains("<td class=\"n\">14.3 %</td>"), html)
    XCTAssertTrue(html.contains("<svg class=\"spark\""))
    XCTAssertTrue(html.contains("<span class=\"err\">DOWN</span>"))
    XCTAssertTrue(html.contains("location.reload();},7*1000)"))
    XCTAssertTrue(html.contains("<meta http-equiv=\"refresh\" content=\"7\">"))
    // One inline script, nothing loaded from anywhere.
    XCTAssertEqual(html.components(separatedBy: "<script").count, 2)
    for needle in ["src=", "href=", "@import", "url("] {
      XCTAssertFalse(html.lowercased().contains(needle), needle)
    }
  }

  func testFixedAndBuckets() {
    XCTAssertEqual(StatusPage.fixed(3.14159, 2), "3.14")
    XCTAssertEqual(StatusPage.fixed(0.05, 1), "0.1")
    XCTAssertEqual(StatusPage.fixed(12, 0), "12")
    XCTAssertEqual(StatusPage.fixed(-1.5, 1), "-1.5")
    XCTAssertEqual(LiveStats.bucket(ms: 0), 0)
    XCTAssertEqual(LiveStats.bucket(ms: 0.25), 0)
    XCTAssertEqual(LiveStats.latencyBoundsMs[LiveStats.bucket(ms: 1)], 1, accuracy: 1e-9)
    XCTAssertGreaterThanOrEqual(LiveStats.latencyBoundsMs[LiveStats.bucket(ms: 1.1)], 1.1)
    XCTAssertEqual(LiveStats.bucket(ms: 1e9), LiveStats.latencyBoundsMs.count)
  }
}
