import CredproxyConfig
import Synchronization

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
public final class RateLimiter: Sendable {
  private struct Key: Hashable {
    var client: String?
    var route: Int
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

  private let state = Mutex(State())
  public let maxBuckets: Int

  public init(maxBuckets: Int = 65_536) {
    self.maxBuckets = max(1, maxBuckets)
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
    let key = Key(client: client, route: route)
    let burst = Double(max(1, burst))
    let rate = rate > 0 ? rate : .leastNonzeroMagnitude
    return state.withLock { s in
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

  /// Buckets currently held (for tests and the status page).
  public var bucketCount: Int { state.withLock { $0.buckets.count } }

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
