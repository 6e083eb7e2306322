import CredproxyConfig
import Synchronization

/// What a concurrency limit counts: one client's requests everywhere (`max-concurrent` in a
/// client block), or one client's requests on one route (`max-concurrent` in a route block).
/// A nil client is the anonymous caller.
public enum ConcurrencyKey: Sendable, Hashable {
  case client(String?)
  case clientRoute(String?, route: Int)
}

public enum ConcurrencyOutcome: Sendable, Equatable {
  case acquired
  /// The client's own limit (client block) is reached.
  case clientLimit(Int)
  /// The client's limit on this route (route block) is reached.
  case routeLimit(Int)
}

/// Requests in flight per client and per (client, route), against the config's
/// `max-concurrent` limits. Thread-safe. Keys without a limit are not counted; counts that
/// drop to zero are removed, so memory follows what is in flight.
public final class ConcurrencyLimiter: Sendable {
  private let clientLimits: [String: Int]
  private let routeLimits: [Int: Int]
  private let counts = Mutex([ConcurrencyKey: Int]())

  /// - Parameters:
  ///   - clientLimits: by client name.
  ///   - routeLimits: by route index; applies to each client (and the anonymous caller)
  ///     separately.
  public init(clientLimits: [String: Int] = [:], routeLimits: [Int: Int] = [:]) {
    self.clientLimits = clientLimits
    self.routeLimits = routeLimits
  }

  public convenience init(config: ProxyConfig) {
    var c: [String: Int] = [:]
    for client in config.clients {
      if let n = client.maxConcurrent { c[client.name] = n }
    }
    var r: [Int: Int] = [:]
    for (i, route) in config.routes.enumerated() {
      if let n = route.maxConcurrent { r[i] = n }
    }
    self.init(clientLimits: c, routeLimits: r)
  }

  /// The limit for `key`; nil: unlimited.
  public func limit(for key: ConcurrencyKey) -> Int? {
    switch key {
    case .client(let name): return name.flatMap { clientLimits[$0] }
    case .clientRoute(_, let route): return routeLimits[route]
    }
  }

  /// Counts one more in flight for `key` unless that would pass its limit. Always true for a
  /// key without a limit. Pair each `true` with one `release(key)`.
  public func tryAcquire(_ key: ConcurrencyKey) -> Bool {
    guard let limit = limit(for: key) else { return true }
    return counts.withLock { c in
      let n = c[key, default: 0]
      guard n < limit else { return false }
      c[key] = n + 1
      return true
    }
  }

  public func release(_ key: ConcurrencyKey) {
    guard limit(for: key) != nil else { return }
    counts.withLock { c in
      guard let n = c[key] else { return }
      if n <= 1 { c[key] = nil } else { c[key] = n - 1 }
    }
  }

  /// Both limits of a request at once: the client's and the client's on the route. On
  /// `.acquired` call `release(client:route:)` when the request ends; otherwise nothing is held.
  public func tryAcquire(client: String?, route: Int) -> ConcurrencyOutcome {
    let ck = ConcurrencyKey.client(client)
    let rk = ConcurrencyKey.clientRoute(client, route: route)
    let cl = limit(for: ck)
    let rl = limit(for: rk)
    if cl == nil && rl == nil { return .acquired }
    return counts.withLock { c in
      if let cl, c[ck, default: 0] >= cl { return .clientLimit(cl) }
      if let rl, c[rk, default: 0] >= rl { return .routeLimit(rl) }
      if cl != nil { c[ck, default: 0] += 1 }
      if rl != nil { c[rk, default: 0] += 1 }
      return .acquired
    }
  }

  public func release(client: String?, route: Int) {
    release(.client(client))
    release(.clientRoute(client, route: route))
  }

  /// Requests in flight for `key` (0 for keys without a limit).
  public func inFlight(_ key: ConcurrencyKey) -> Int { counts.withLock { $0[key, default: 0] } }
}
