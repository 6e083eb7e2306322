import Synchronization
import Wire

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The proxy's counters, rendered in the Prometheus text exposition format 0.0.4.
///
/// Safe to update from every event-loop thread: counters live in a few shards, each behind its
/// own mutex, and a thread always uses the same shard (picked from its thread id), so event
/// loops do not contend with each other; `render` merges the shards. Gauges are atomics.
///
/// Label values come from the config (route names, client names, credential names) or from
/// fixed sets (status classes, error kinds, denial codes), so the series stay bounded.
public final class Metrics: Sendable {
  /// The histogram buckets of `credproxy_request_duration_seconds`, in seconds.
  public static let durationBuckets: [Double] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  ]
  /// `Content-Type` for the exposition.
  public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

  private struct RequestKey: Hashable {
    /// The route's label ("none" when no route matched): labels, not indexes, survive reloads.
    var route: String
    var statusClass: UInt8
    var client: String?
  }

  private struct ShardState {
    var requests: [RequestKey: UInt64] = [:]
    /// Per bucket (not cumulative); the last is +Inf.
    var buckets = [UInt64](repeating: 0, count: Metrics.durationBuckets.count + 1)
    var durationSum: Double = 0
    var durationCount: UInt64 = 0
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0
    var mints: [String: UInt64] = [:]
    var mintFailures: [String: UInt64] = [:]
    var cacheHits: [String: UInt64] = [:]
    var upstreamErrors: [String: UInt64] = [:]
    var denials: [String: UInt64] = [:]
  }

  private final class Shard: Sendable {
    let state = Mutex(ShardState())
  }

  /// What lives for the whole process: counters and gauges. Views (`reconfigured`) share it.
  private final class Store: Sendable {
    let shards: [Shard]
    let openConnections = Atomic<Int>(0)
    let openTunnels = Atomic<Int>(0)
    init(shards: Int) { self.shards = (0..<max(1, shards)).map { _ in Shard() } }
  }

  private let store: Store
  private var shards: [Shard] { store.shards }
  private let routeLabels: [String]

  /// The `route` label of each route by index: its name, with ` #N` when a name is used twice.
  /// Also the key limiters use for a route's state across reloads.
  public static func routeLabels(_ routeNames: [String]) -> [String] {
    var seen: [String: Int] = [:]
    for n in routeNames { seen[n, default: 0] += 1 }
    return routeNames.enumerated().map { i, n in seen[n]! > 1 ? "\(n) #\(i + 1)" : n }
  }

  /// - Parameters:
  ///   - routeNames: the `route` label of each route, by index (e.g. `config.routes.map(\.name)`);
  ///     a name used twice gets ` #N` appended.
  ///   - shards: counter shards; about the number of event-loop threads.
  public init(routeNames: [String], shards: Int = 4) {
    routeLabels = Self.routeLabels(routeNames)
    store = Store(shards: shards)
  }

  private init(routeLabels: [String], store: Store) {
    self.routeLabels = routeLabels
    self.store = store
  }

  /// A view for a reloaded config: new route labels, the same counters and gauges (metrics live
  /// for the whole process; a reload neither resets a counter nor unbalances a gauge).
  public func reconfigured(routeNames: [String]) -> Metrics {
    Metrics(routeLabels: Self.routeLabels(routeNames), store: store)
  }

  private var shard: Shard {
    #if canImport(Glibc)
      let id = UInt64(pthread_self())
    #elseif canImport(Darwin)
      let id = UInt64(UInt(bitPattern: pthread_self()))
    #else
      let id: UInt64 = 0
    #endif
    // Thread ids are aligned addresses: mix the bits before taking the remainder.
    let mixed = (id >> 12 ^ id >> 20) &* 0x9E37_79B9_7F4A_7C15
    return shards[Int((mixed >> 32) % UInt64(shards.count))]
  }

  // MARK: Updates

  /// One finished request (or refusal).
  /// - Parameters:
  ///   - routeIndex: index in `config.routes`; nil when no route matched (`route="none"`).
  ///   - status: the HTTP status sent (`2xx`…`5xx`; anything else is `status_class="other"`).
  ///   - client: the client's name; nil for anonymous or unidentified (`client=""`).
  public func recordRequest(
    routeIndex: Int?, status: Int, client: String?, durationSeconds: Double, bytesIn: UInt64,
    bytesOut: UInt64
  ) {
    let cls: UInt8 = (100...599).contains(status) ? UInt8(status / 100) : 0
    let route =
      routeIndex.map { $0 >= 0 && $0 < routeLabels.count ? routeLabels[$0] : "#\($0 + 1)" }
      ?? "none"
    let key = RequestKey(route: route, statusClass: cls, client: client)
    let d = durationSeconds.isFinite ? max(0, durationSeconds) : 0
    var bucket = Self.durationBuckets.count
    for (i, le) in Self.durationBuckets.enumerated() where d <= le {
      bucket = i
      break
    }
    shard.state.withLock { s in
      s.requests[key, default: 0] &+= 1
      s.buckets[bucket] &+= 1
      s.durationSum += d
      s.durationCount &+= 1
      s.bytesIn &+= bytesIn
      s.bytesOut &+= bytesOut
    }
  }

  public func connectionOpened() { store.openConnections.add(1, ordering: .relaxed) }
  public func connectionClosed() { store.openConnections.subtract(1, ordering: .relaxed) }
  public func tunnelOpened() { store.openTunnels.add(1, ordering: .relaxed) }
  public func tunnelClosed() { store.openTunnels.subtract(1, ordering: .relaxed) }

  public func tokenMinted(credential: String) {
    shard.state.withLock { $0.mints[credential, default: 0] &+= 1 }
  }
  public func tokenMintFailed(credential: String) {
    shard.state.withLock { $0.mintFailures[credential, default: 0] &+= 1 }
  }
  public func tokenCacheHit(credential: String) {
    shard.state.withLock { $0.cacheHits[credential, default: 0] &+= 1 }
  }
  /// `kind`: e.g. `connect`, `dns`, `tls`, `protocol`, `timeout`.
  public func upstreamError(kind: String) {
    shard.state.withLock { $0.upstreamErrors[kind, default: 0] &+= 1 }
  }
  /// `reason`: the error code sent (`no_route`, `client_not_allowed`, `rate_limited`, …).
  public func denial(reason: String) {
    shard.state.withLock { $0.denials[reason, default: 0] &+= 1 }
  }

  /// A request refused (or, in report mode, let through) for `code`.
  public func denial(_ code: ErrorCode) { denial(reason: code.rawValue) }

  /// An upstream failure, counted under its code (`upstream_tls`, …).
  public func upstreamError(_ code: ErrorCode) { upstreamError(kind: code.rawValue) }

  // MARK: Reading (the status page)

  /// Upstream failures since start, by kind.
  public func upstreamErrorCounts() -> [String: UInt64] {
    var total: [String: UInt64] = [:]
    for shard in shards {
      total.merge(shard.state.withLock { $0.upstreamErrors }, uniquingKeysWith: &+)
    }
    return total
  }

  public var openConnections: Int { store.openConnections.load(ordering: .relaxed) }
  public var openTunnels: Int { store.openTunnels.load(ordering: .relaxed) }

  // MARK: Exposition

  /// The whole exposition, every family with `# HELP` and `# TYPE`.
  public func render() -> String {
    var total = ShardState()
    for shard in shards {
      let s = shard.state.withLock { $0 }
      total.requests.merge(s.requests, uniquingKeysWith: &+)
      for i in total.buckets.indices { total.buckets[i] &+= s.buckets[i] }
      total.durationSum += s.durationSum
      total.durationCount &+= s.durationCount
      total.bytesIn &+= s.bytesIn
      total.bytesOut &+= s.bytesOut
      total.mints.merge(s.mints, uniquingKeysWith: &+)
      total.mintFailures.merge(s.mintFailures, uniquingKeysWith: &+)
      total.cacheHits.merge(s.cacheHits, uniquingKeysWith: &+)
      total.upstreamErrors.merge(s.upstreamErrors, uniquingKeysWith: &+)
      total.denials.merge(s.denials, uniquingKeysWith: &+)
    }
    var out = ""
    func family(_ name: String, _ type: String, _ help: String) {
      out += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }
    func sample(_ name: String, _ labels: [(String, String)], _ value: String) {
      out += name
      if !labels.isEmpty {
        out += "{"
        out += labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",")
        out += "}"
      }
      out += " \(value)\n"
    }

    family(
      "credproxy_requests_total", "counter",
      "Requests answered, by route, status class and client.")
    let requests = total.requests.map { (k, v) -> ([(String, String)], UInt64) in
      let route = k.route
      let cls = k.statusClass == 0 ? "other" : "\(k.statusClass)xx"
      return ([("route", route), ("status_class", cls), ("client", k.client ?? "")], v)
    }.sorted { $0.0.map { $0.1 }.lexicographicallyPrecedes($1.0.map { $0.1 }) }
    for (labels, v) in requests { sample("credproxy_requests_total", labels, "\(v)") }

    family(
      "credproxy_request_duration_seconds", "histogram",
      "Time from request head to the end of the response.")
    var cumulative: UInt64 = 0
    for (i, le) in Self.durationBuckets.enumerated() {
      cumulative &+= total.buckets[i]
      sample(
        "credproxy_request_duration_seconds_bucket", [("le", Self.formatLe(le))], "\(cumulative)")
    }
    cumulative &+= total.buckets[Self.durationBuckets.count]
    sample("credproxy_request_duration_seconds_bucket", [("le", "+Inf")], "\(cumulative)")
    sample("credproxy_request_duration_seconds_sum", [], Self.formatDouble(total.durationSum))
    sample("credproxy_request_duration_seconds_count", [], "\(total.durationCount)")

    family("credproxy_bytes_in_total", "counter", "Request body bytes received from callers.")
    sample("credproxy_bytes_in_total", [], "\(total.bytesIn)")
    family("credproxy_bytes_out_total", "counter", "Response body bytes sent to callers.")
    sample("credproxy_bytes_out_total", [], "\(total.bytesOut)")

    family("credproxy_open_connections", "gauge", "Caller connections open now.")
    sample("credproxy_open_connections", [], "\(store.openConnections.load(ordering: .relaxed))")
    family("credproxy_open_tunnels", "gauge", "CONNECT tunnels open now.")
    sample("credproxy_open_tunnels", [], "\(store.openTunnels.load(ordering: .relaxed))")

    func labelled(_ name: String, _ help: String, _ label: String, _ values: [String: UInt64]) {
      family(name, "counter", help)
      for (k, v) in values.sorted(by: { $0.key < $1.key }) { sample(name, [(label, k)], "\(v)") }
    }
    labelled(
      "credproxy_token_mints_total", "Tokens minted, by credentials block.", "credential",
      total.mints)
    labelled(
      "credproxy_token_mint_failures_total", "Token mints that failed, by credentials block.",
      "credential", total.mintFailures)
    labelled(
      "credproxy_token_cache_hits_total", "Requests served from the token cache.", "credential",
      total.cacheHits)
    labelled(
      "credproxy_upstream_errors_total", "Upstream failures, by kind.", "kind",
      total.upstreamErrors)
    labelled(
      "credproxy_denials_total", "Requests refused (or reported), by reason.", "reason",
      total.denials)
    return out
  }

  /// A label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
  public static func escapeLabel(_ s: String) -> String {
    guard s.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return s }
    var out = ""
    for c in s.unicodeScalars {
      switch c {
      case "\\": out += "\\\\"
      case "\"": out += "\\\""
      case "\n": out += "\\n"
      default: out.unicodeScalars.append(c)
      }
    }
    return out
  }

  /// HELP text: `\` → `\\`, newline → `\n`.
  static func escapeHelp(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
      switch c {
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default: out.unicodeScalars.append(c)
      }
    }
    return out
  }

  static func formatLe(_ d: Double) -> String {
    d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
  }

  static func formatDouble(_ d: Double) -> String {
    if d.isNaN { return "NaN" }
    if d.isInfinite { return d > 0 ? "+Inf" : "-Inf" }
    return "\(d)"
  }
}
