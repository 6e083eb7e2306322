import CredproxyConfig
import Foundation
import Glibc
import Synchronization
import XCTest

@testable import EgressPolicy

/// Metrics and limiters outlive a config: a reload makes a new view onto the same state.
final class LifetimeTests: XCTestCase {
  func testMonotonicClockIsClockMonotonicNotWallTime() {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    let mono = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    XCTAssertEqual(MonotonicClock.seconds(), mono, accuracy: 5)
    let a = MonotonicClock.seconds()
    let b = MonotonicClock.seconds()
    XCTAssertLessThanOrEqual(a, b)
  }

  func testRateLimiterReadsItsClock() {
    let now = Mutex<Double>(1000)
    let limiter = RateLimiter(clock: { now.withLock { $0 } })
    let limit = RateLimit(count: 1, unit: .second, burst: 2)
    XCTAssertEqual(limiter.take(client: nil, route: 0, limit: limit), .allowed)
    XCTAssertEqual(limiter.take(client: nil, route: 0, limit: limit), .allowed)
    XCTAssertEqual(
      limiter.take(client: nil, route: 0, limit: limit), .limited(retryAfterSeconds: 1))
    now.withLock { $0 += 1 }
    XCTAssertEqual(limiter.take(client: nil, route: 0, limit: limit), .allowed)
  }

  func testRateLimiterDefaultClockIsMonotonic() {
    XCTAssertEqual(RateLimiter().clock(), MonotonicClock.seconds(), accuracy: 5)
  }

  func testReconfiguredRateLimiterKeepsBucketsOfUnchangedRoutes() {
    let now = Mutex<Double>(50)
    let first = RateLimiter(clock: { now.withLock { $0 } }).reconfigured(routeKeys: ["a", "b"])
    let limit = RateLimit(count: 1, unit: .minute, burst: 1)
    XCTAssertEqual(first.take(client: "c", route: 1, limit: limit), .allowed)
    // Reloaded: route "b" moved to index 0, a new route took index 1.
    let second = first.reconfigured(routeKeys: ["b", "new"])
    XCTAssertNotEqual(second.take(client: "c", route: 0, limit: limit), .allowed)
    XCTAssertEqual(second.take(client: "c", route: 1, limit: limit), .allowed)
  }

  func testReconfiguredConcurrencyLimiterSharesCounts() {
    let first = ConcurrencyLimiter(routeLimits: [0: 1], routeKeys: ["a"])
    XCTAssertEqual(first.tryAcquire(client: nil, route: 0), .acquired)
    let second = first.reconfigured(clientLimits: [:], routeLimits: [1: 1], routeKeys: ["x", "a"])
    XCTAssertEqual(second.tryAcquire(client: nil, route: 1), .routeLimit(1))
    // The request that began under the first config releases through its own view.
    first.release(client: nil, route: 0)
    XCTAssertEqual(second.tryAcquire(client: nil, route: 1), .acquired)
    second.release(client: nil, route: 1)
    second.release(client: nil, route: 1)
    XCTAssertEqual(second.inFlight(.clientRoute(nil, route: 1)), 0)
  }

  func testReconfiguredMetricsKeepCountersAndGauges() {
    let first = Metrics(routeNames: ["a", "b"])
    first.recordRequest(
      routeIndex: 1, status: 200, client: nil, durationSeconds: 0.01, bytesIn: 1, bytesOut: 2)
    first.connectionOpened()
    let second = first.reconfigured(routeNames: ["b"])
    second.recordRequest(
      routeIndex: 0, status: 200, client: nil, durationSeconds: 0.01, bytesIn: 1, bytesOut: 2)
    second.connectionClosed()
    let text = second.render()
    XCTAssertTrue(
      text.contains("credproxy_requests_total{route=\"b\",status_class=\"2xx\",client=\"\"} 2"),
      text)
    XCTAssertTrue(text.contains("credproxy_open_connections 0\n"), text)
    XCTAssertEqual(first.render(), text)
  }
}
