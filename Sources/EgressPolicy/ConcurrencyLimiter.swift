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
///
/// The counts live for the whole process: a reload makes a new view (`reconfigured`) with the new
/// limits onto the same counts, keyed by route key (not index), so requests in flight under the
/// old config still count against the new limits and release through the view they acquired with.
public final class ConcurrencyLimiter: Sendable {
  private enum StoredKey: Hashable {
    case client(String?)
    case clientRoute(String?, route: String)
  }

  private final class Shared: Sendable {
    let counts = Mutex([StoredKey: Int]())
  }

  private let clientLimits: [String: Int]
  private let routeLimits: [Int: Int]
  private let routeKeys: [String]
  private let shared: Shared

  /// - Parameters:
  ///   - clientLimits: by client name.
  ///   - routeLimits: by route index; applies to each client (and the anonymous caller)
  ///     separately.
  ///   - routeKeys: the key of each route index (see `Metrics.routeLabels`).
  public convenience init(
    clientLimits: [String: Int] = [:], routeLimits: [Int: Int] = [:], routeKeys: [String] = []
  ) {
    self.init(
      clientLimits: clientLimits, routeLimits: routeLimits, routeKeys: routeKeys, shared: Shared())
  }

  private init(
    clientLimits: [String: Int], routeLimits: [Int: Int], routeKeys: [String], shared: Shared
  ) {
    self.clientLimits = clientLimits
    self.routeLimits = routeLimits
    self.routeKeys = routeKeys
    self.shared = shared
  }

  /// A view with new limits onto the same counts.
  public func reconfigured(
    clientLimits: [String: Int], routeLimits: [Int: Int], routeKeys: [String]
  ) -> ConcurrencyLimiter {
    ConcurrencyLimiter(
      clientLimits: clientLimits, routeLimits: routeLimits, routeKeys: routeKeys, shared: shared)
  }

  /// A view with `config`'s limits onto the same counts.
  public func reconfigured(config: ProxyConfig) -> ConcurrencyLimiter {
    let (c, r) = Self.limits(config)
    return reconfigured(
      clientLimits: c, routeLimits: r, routeKeys: Metrics.routeLabels(config.routes.map(\.name)))
  }

  private static func limits(_ config: ProxyConfig) -> ([String: Int], [Int: Int]) {
    var c: [String: Int] = [:]
    for client in config.clients {
      if let n = client.maxConcurrent { c[client.name] = n }
    }
    var r: [Int: Int] = [:]
    for (i, route) in config.routes.enumerated() {
      if let n = route.maxConcurrent { r[i] = n }
    }
    return (c, r)
  }

  public convenience init(config: ProxyConfig) {
    let (c, r) = Self.limits(config)
    self.init(
      clientLimits: c, routeLimits: r, routeKeys: Metrics.routeLabels(config.routes.map(\.name)))
  }

  private func stored(_ key: ConcurrencyKey) -> StoredKey {
    switch key {
    case .client(let name): return .client(name)
    case .clientRoute(let name, let route):
      return .clientRoute(
        name, route: route >= 0 && route < routeKeys.count ? routeKeys[route] : "#\(route)")
    }
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
    let key = stored(key)
    return shared.counts.withLock { c in
      let n = c[key, default: 0]
      guard n < limit else { return false }
      c[key] = n + 1
      return true
    }
  }

  public func release(_ key: ConcurrencyKey) {
    guard limit(for: key) != nil else { return }
    let key = stored(key)
    shared.counts.withLock { c in
      guard let n = c[key] else { return }
      if n <= 1 { c[key] = nil } else { c[key] = n - 1 }
    }
  }

  /// Both limits of a request at once: the client's and the client's on the route. On
  /// `.acquired` call `release(client:route:)` when the request ends; otherwise nothing is held.
  public func tryAcquire(client: String?, route: Int) -> ConcurrencyOutcome {
    let cl = limit(for: .client(client))
    let rl = limit(for: .clientRoute(client, route: route))
    let ck = stored(.client(client))
    let rk = stored(.clientRoute(client, route: route))
    if cl == nil && rl == nil { return .acquired }
    return shared.counts.withLock { c in
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
  public func inFlight(_ key: ConcurrencyKey) -> Int {
    let key = stored(key)
    return shared.counts.withLock { $0[key, default: 0] }
  }
}
