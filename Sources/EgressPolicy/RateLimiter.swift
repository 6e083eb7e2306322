import CredproxyConfig
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Seconds on CLOCK_MONOTONIC: never jumps with the wall clock (NTP steps, `date -s`), so a
/// limiter can be neither refilled nor starved by a clock change.
public enum MonotonicClock {
  public static func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
  }
}

public enum RateDecision: Sendable, Equatable {
  case allowed
  /// Answer 429 with `Retry-After: retryAfterSeconds` (at least 1).
  case limited(retryAfterSeconds: Int)
}

/// Token buckets per (client, route): each holds up to `burst` requests and refills at `rate`
/// per second. Thread-safe (one mutex; a take is a hash lookup and a little arithmetic).
///
/// Memory is bounded: a bucket that has refilled completely is the same as no bucket, so such
/// buckets are dropped when the table grows past `maxBuckets` or once a minute; if every bucket
/// is still in use the least recently used go.
///
/// Buckets live for the whole process: a config reload makes a new view (`reconfigured`) onto the
/// same buckets. A route's bucket is keyed by the route's key (its patterns as written, see
/// `Metrics.routeLabels`), not its position, so a route that survives a reload keeps its buckets
/// wherever it moved; a renamed or new route starts full. Time comes from `clock`
/// (CLOCK_MONOTONIC unless a test gives another).
public final class RateLimiter: Sendable {
  private struct Key: Hashable {
    var client: String?
    var route: String
  }

  private struct Bucket {
    var tokens: Double
    var last: Double
    var rate: Double
    var burst: Double

    /// Tokens at `now`, capped at `burst`.
    func level(at now: Double) -> Double {
      min(burst, tokens + max(0, now - last) * rate)
    }
  }

  private struct State {
    var buckets: [Key: Bucket] = [:]
    var lastSweep: Double = -.infinity
  }

  private final class Shared: Sendable {
    let state = Mutex(State())
  }

  private let shared: Shared
  public let maxBuckets: Int
  /// The route key of each route index in the config this view serves.
  private let routeKeys: [String]
  /// Seconds on a monotonic clock.
  public let clock: @Sendable () -> Double

  public convenience init(
    maxBuckets: Int = 65_536, routeKeys: [String] = [],
    clock: @escaping @Sendable () -> Double = MonotonicClock.seconds
  ) {
    self.init(shared: Shared(), maxBuckets: maxBuckets, routeKeys: routeKeys, clock: clock)
  }

  private init(
    shared: Shared, maxBuckets: Int, routeKeys: [String], clock: @escaping @Sendable () -> Double
  ) {
    self.shared = shared
    self.maxBuckets = max(1, maxBuckets)
    self.routeKeys = routeKeys
    self.clock = clock
  }

  /// A view for a reloaded config with the same buckets and clock.
  public func reconfigured(routeKeys: [String]) -> RateLimiter {
    RateLimiter(shared: shared, maxBuckets: maxBuckets, routeKeys: routeKeys, clock: clock)
  }

  private func routeKey(_ index: Int) -> String {
    index >= 0 && index < routeKeys.count ? routeKeys[index] : "#\(index)"
  }

  /// Takes one request from the bucket of (`client`, `route`).
  /// - Parameters:
  ///   - client: the client's name; nil for anonymous callers (who share one bucket per route).
  ///   - route: the route's index in `ProxyConfig.routes`.
  ///   - rate: refill, requests per second (> 0).
  ///   - burst: bucket size (≥ 1).
  ///   - now: seconds on a monotonic clock.
  public func take(client: String?, route: Int, rate: Double, burst: Int, now: Double)
    -> RateDecision
  {
    let key = Key(client: client, route: routeKey(route))
    let burst = Double(max(1, burst))
    let rate = rate > 0 ? rate : .leastNonzeroMagnitude
    return shared.state.withLock { s in
      var b =
        s.buckets[key] ?? Bucket(tokens: burst, last: now, rate: rate, burst: burst)
      b.tokens = min(burst, b.level(at: now))
      b.last = max(b.last, now)
      b.rate = rate
      b.burst = burst
      let decision: RateDecision
      if b.tokens >= 1 {
        b.tokens -= 1
        decision = .allowed
      } else {
        let wait = ((1 - b.tokens) / rate).rounded(.up)
        decision = .limited(
          retryAfterSeconds: wait.isFinite ? max(1, Int(min(wait, 86_400))) : 86_400)
      }
      s.buckets[key] = b
      if s.buckets.count > maxBuckets || now - s.lastSweep >= 60 {
        Self.sweep(&s, now: now, maxBuckets: maxBuckets)
      }
      return decision
    }
  }

  /// `take` with a route's `rate` setting.
  public func take(client: String?, route: Int, limit: RateLimit, now: Double) -> RateDecision {
    take(client: client, route: route, rate: limit.perSecond, burst: limit.burst, now: now)
  }

  /// `take` with a route's `rate` setting, now on the limiter's clock.
  public func take(client: String?, route: Int, limit: RateLimit) -> RateDecision {
    take(client: client, route: route, limit: limit, now: clock())
  }

  /// Buckets currently held (for tests and the status page).
  public var bucketCount: Int { shared.state.withLock { $0.buckets.count } }

  private static func sweep(_ s: inout State, now: Double, maxBuckets: Int) {
    s.lastSweep = now
    s.buckets = s.buckets.filter { $0.value.level(at: now) < $0.value.burst }
    if s.buckets.count > maxBuckets {
      // Everything left is in use: drop the least recently used down to 90 %.
      let keep = max(1, maxBuckets * 9 / 10)
      let sorted = s.buckets.sorted { $0.value.last > $1.value.last }
      s.buckets = Dictionary(uniqueKeysWithValues: sorted.prefix(keep).map { ($0.key, $0.value) })
    }
  }
}
