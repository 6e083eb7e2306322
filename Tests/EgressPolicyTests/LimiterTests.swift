import CredproxyConfig
import EgressPolicy
import Foundation
import XCTest

final class LimiterTests: XCTestCase {
  func testBurstThenRefill() {
    let limiter = RateLimiter()
    // 2/s, burst 5: five back to back, then limited.
    for i in 0..<5 {
      XCTAssertEqual(
        limiter.take(client: "a", route: 0, rate: 2, burst: 5, now: 100), .allowed, "\(i)")
    }
    XCTAssertEqual(
      limiter.take(client: "a", route: 0, rate: 2, burst: 5, now: 100),
      .limited(retryAfterSeconds: 1))
    // Other clients and routes have their own buckets; anonymous (nil) too.
    XCTAssertEqual(limiter.take(client: "b", route: 0, rate: 2, burst: 5, now: 100), .allowed)
    XCTAssertEqual(limiter.take(client: "a", route: 1, rate: 2, burst: 5, now: 100), .allowed)
    XCTAssertEqual(limiter.take(client: nil, route: 0, rate: 2, burst: 5, now: 100), .allowed)
    // Half a second refills one.
    XCTAssertEqual(limiter.take(client: "a", route: 0, rate: 2, burst: 5, now: 100.5), .allowed)
    XCTAssertEqual(
      limiter.take(client: "a", route: 0, rate: 2, burst: 5, now: 100.5),
      .limited(retryAfterSeconds: 1))
    // A long pause refills to the burst, not beyond.
    var allowed = 0
    for _ in 0..<10
    where limiter.take(client: "a", route: 0, rate: 2, burst: 5, now: 1000) == .allowed {
      allowed += 1
    }
    XCTAssertEqual(allowed, 5)
  }

  func testRetryAfter() {
    let limiter = RateLimiter()
    // 6 per minute = one every 10 s.
    let limit = RateLimit(count: 6, unit: .minute, burst: 1)
    XCTAssertEqual(limiter.take(client: "a", route: 0, limit: limit, now: 0), .allowed)
    XCTAssertEqual(
      limiter.take(client: "a", route: 0, limit: limit, now: 0), .limited(retryAfterSeconds: 10))
    XCTAssertEqual(
      limiter.take(client: "a", route: 0, limit: limit, now: 7.5), .limited(retryAfterSeconds: 3))
    XCTAssertEqual(limiter.take(client: "a", route: 0, limit: limit, now: 10), .allowed)
    // A clock that steps back does not mint tokens.
    XCTAssertEqual(
      limiter.take(client: "a", route: 0, limit: limit, now: 5), .limited(retryAfterSeconds: 10))
    // Default burst = count.
    XCTAssertEqual(RateLimit(count: 10, unit: .second).burst, 10)
    XCTAssertEqual(RateLimit(count: 600, unit: .minute).perSecond, 10)
  }

  func testIdleBucketsAreEvicted() {
    let limiter = RateLimiter(maxBuckets: 100)
    for i in 0..<100 { _ = limiter.take(client: "c\(i)", route: 0, rate: 1, burst: 2, now: 0) }
    XCTAssertEqual(limiter.bucketCount, 100)
    // Two seconds later every bucket is full again: the next take sweeps them.
    _ = limiter.take(client: "new", route: 0, rate: 1, burst: 2, now: 2)
    _ = limiter.take(client: "new2", route: 0, rate: 1, burst: 2, now: 2)
    XCTAssertLessThanOrEqual(limiter.bucketCount, 2)
    // All busy: least recently used go, the table stays bounded.
    for i in 0..<1000 {
      _ = limiter.take(
        client: "busy\(i)", route: 0, rate: 0.001, burst: 1, now: 3 + Double(i) * 0.001)
    }
    XCTAssertLessThanOrEqual(limiter.bucketCount, 100)
    // The most recent survive: still limited.
    if case .allowed = limiter.take(client: "busy999", route: 0, rate: 0.001, burst: 1, now: 4.0) {
      XCTFail("recent bucket was evicted")
    }
  }

  func testRateLimiterIsThreadSafe() {
    let limiter = RateLimiter()
    let allowed = Counter()
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
      for _ in 0..<1000
      where limiter.take(client: "x", route: 0, rate: 0.0001, burst: 500, now: 1) == .allowed {
        allowed.add()
      }
    }
    XCTAssertEqual(allowed.value, 500)
  }

  func testConcurrency() throws {
    let config = try ConfigParser.parse(
      text: """
        client a {
          token env:A
          max-concurrent 3
        }
        client b {
          token env:B
        }
        route one.example.com {
          max-concurrent 2
        }
        route two.example.com {
        }
        """)
    let limiter = ConcurrencyLimiter(config: config)
    XCTAssertEqual(limiter.limit(for: .client("a")), 3)
    XCTAssertNil(limiter.limit(for: .client("b")))
    XCTAssertEqual(limiter.limit(for: .clientRoute("b", route: 0)), 2)
    XCTAssertNil(limiter.limit(for: .clientRoute("b", route: 1)))

    // Route limit, per client.
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .routeLimit(2))
    XCTAssertEqual(limiter.tryAcquire(client: "b", route: 0), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: nil, route: 0), .acquired)
    // Client limit, across routes: a has 2 in flight, one more is allowed.
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 1), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 1), .clientLimit(3))
    XCTAssertEqual(limiter.inFlight(.client("a")), 3)
    // Refusals hold nothing.
    XCTAssertEqual(limiter.inFlight(.clientRoute("a", route: 0)), 2)
    limiter.release(client: "a", route: 0)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 1), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .clientLimit(3))
    for _ in 0..<3 { limiter.release(client: "a", route: 1) }
    limiter.release(client: "a", route: 0)
    XCTAssertEqual(limiter.inFlight(.client("a")), 0)
    XCTAssertEqual(limiter.inFlight(.clientRoute("a", route: 0)), 0)
    // An extra release does not go negative.
    limiter.release(client: "a", route: 0)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .acquired)
    XCTAssertEqual(limiter.tryAcquire(client: "a", route: 0), .routeLimit(2))

    // Single keys.
    let single = ConcurrencyLimiter(clientLimits: ["x": 1])
    XCTAssertTrue(single.tryAcquire(.client("x")))
    XCTAssertFalse(single.tryAcquire(.client("x")))
    XCTAssertTrue(single.tryAcquire(.client("y")), "no limit")
    single.release(.client("x"))
    XCTAssertTrue(single.tryAcquire(.client("x")))
  }

  func testConcurrencyIsThreadSafe() {
    let limiter = ConcurrencyLimiter(clientLimits: ["x": 4])
    let peak = Counter()
    let current = Counter()
    DispatchQueue.concurrentPerform(iterations: 8) { _ in
      for _ in 0..<2000 {
        if limiter.tryAcquire(client: "x", route: 0) == .acquired {
          peak.max(current.add())
          current.add(-1)
          limiter.release(client: "x", route: 0)
        }
      }
    }
    XCTAssertLessThanOrEqual(peak.value, 4)
    XCTAssertEqual(limiter.inFlight(.client("x")), 0)
  }
}

/// A lock-protected integer for the threaded tests.
final class Counter: @unchecked Sendable {
  private let lock = NSLock()
  private var n = 0
  @discardableResult func add(_ d: Int = 1) -> Int {
    lock.lock()
    defer { lock.unlock() }
    n += d
    return n
  }
  func max(_ v: Int) {
    lock.lock()
    defer { lock.unlock() }
    n = Swift.max(n, v)
  }
  var value: Int {
    lock.lock()
    defer { lock.unlock() }
    return n
  }
}
