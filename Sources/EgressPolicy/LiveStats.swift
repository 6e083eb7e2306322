import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The last 15 minutes of traffic per route and per client, for the status dashboard: requests,
/// errors and a latency histogram in 10-second slots of a ring buffer.
///
/// Cheap on the hot path: a request adds to three counters of one slot in its loop's own shard
/// (one uncontended mutex: only the status page also takes it, once per render). Series are keyed
/// by (route label, client): both come from the config, so their number is bounded; a series with
/// nothing in the window is dropped when the page is rendered.
public final class LiveStats: Sendable {
  /// One slot of the ring.
  public static let slotSeconds = 10
  /// 90 slots of 10 s: 15 minutes.
  public static let slotCount = 90
  /// Latency bucket upper bounds in ms: 0.25 ms × √2ⁱ, up to about 3 minutes; the last bucket is
  /// everything above. A percentile is reported as its bucket's bound, so within a factor √2.
  public static let latencyBoundsMs: [Double] = (0..<39).map { 0.25 * pow(2, Double($0) / 2) }
  private static let bucketCount = latencyBoundsMs.count + 1

  fileprivate struct Key: Hashable {
    var route: String
    var client: String?
  }

  fileprivate struct Series {
    /// The 10-second period each slot currently holds; a slot from an older period is stale.
    var period = [Int](repeating: -1, count: LiveStats.slotCount)
    var requests = [UInt32](repeating: 0, count: LiveStats.slotCount)
    var errors = [UInt32](repeating: 0, count: LiveStats.slotCount)
    /// `slotCount` × `bucketCount`, slot-major.
    var latency = [UInt32](repeating: 0, count: LiveStats.slotCount * LiveStats.bucketCount)
  }

  private struct ShardState {
    var series: [Key: Series] = [:]
    /// The last key written and where it is: a loop mostly sees the same route and client again,
    /// and comparing the same strings is far cheaper than hashing them (callgrind: about 430 of
    /// the 960 instructions a request cost here went to the lookup). Reset when the table changes.
    var last: (key: Key, index: Dictionary<Key, Series>.Index)?
  }

  private final class Shard: Sendable {
    let state = Mutex(ShardState())
  }

  private final class Store: Sendable {
    let shards: [Shard]
    let clock: @Sendable () -> Double
    init(shards: Int, clock: @escaping @Sendable () -> Double) {
      self.shards = (0..<max(1, shards)).map { _ in Shard() }
      self.clock = clock
    }
  }

  private let store: Store
  private let routeLabels: [String]

  /// - Parameters:
  ///   - routeNames: by route index, as for `Metrics` (labels survive reloads, indexes do not).
  ///   - shards: one per event loop; `record` takes the loop's index.
  ///   - clock: seconds on a monotonic clock.
  public init(
    routeNames: [String], shards: Int = 4,
    clock: @escaping @Sendable () -> Double = MonotonicClock.seconds
  ) {
    routeLabels = Metrics.routeLabels(routeNames)
    store = Store(shards: shards, clock: clock)
  }

  private init(routeLabels: [String], store: Store) {
    self.routeLabels = routeLabels
    self.store = store
  }

  /// A view for a reloaded config onto the same history.
  public func reconfigured(routeNames: [String]) -> LiveStats {
    LiveStats(routeLabels: Metrics.routeLabels(routeNames), store: store)
  }

  static func bucket(ms: Double) -> Int {
    guard ms > 0.25 else { return 0 }
    let i = Int((2 * log2(ms / 0.25)).rounded(.up))
    return min(max(0, i), bucketCount - 1)
  }

  /// One finished request.
  /// - Parameters:
  ///   - routeIndex: nil when no route matched (`none`).
  ///   - failed: refused by the proxy, or a 5xx.
  ///   - shard: the event loop's index.
  public func record(
    routeIndex: Int?, client: String?, failed: Bool, durationMs: Double, shard: Int
  ) {
    let route =
      routeIndex.map { $0 >= 0 && $0 < routeLabels.count ? routeLabels[$0] : "#\($0 + 1)" }
      ?? "none"
    let period = Int(store.clock()) / Self.slotSeconds
    let slot = period % Self.slotCount
    let b = Self.bucket(ms: durationMs.isFinite ? durationMs : 0)
    store.shards[shard % store.shards.count].state.withLock { s in
      let key = Key(route: route, client: client)
      if let last = s.last, last.key == key {
        s.series.values[last.index].add(slot: slot, period: period, bucket: b, failed: failed)
        return
      }
      var found = s.series.index(forKey: key)
      if found == nil {
        s.series[key] = Series()
        found = s.series.index(forKey: key)
      }
      guard let index = found else { return }
      s.series.values[index].add(slot: slot, period: period, bucket: b, failed: failed)
      s.last = (key, index)
    }
  }

  /// What the dashboard shows for one route or one client.
  public struct Summary: Sendable, Equatable {
    public var name: String
    public var lastMinute: Window
    public var last15Minutes: Window
    /// Requests per 10-second slot, oldest first (90 points, the last one still filling).
    public var requestsPerSlot: [Int]
    /// Refused or failed requests per slot, same order.
    public var errorsPerSlot: [Int]
  }

  public struct Window: Sendable, Equatable {
    public var requests: Int
    public var errors: Int
    /// Over the window's length (the current slot counts as far as it has run).
    public var perSecond: Double
    /// nil without requests.
    public var p50Ms: Double?
    public var p99Ms: Double?
    public var errorRate: Double { requests == 0 ? 0 : Double(errors) / Double(requests) }
  }

  public struct Snapshot: Sendable, Equatable {
    public var routes: [Summary]
    public var clients: [Summary]
  }

  /// Merges the shards. Clients without a name are `(anonymous)`.
  public func snapshot() -> Snapshot {
    let now = store.clock()
    let period = Int(now) / Self.slotSeconds
    var byRoute: [String: Series] = [:]
    var byClient: [String: Series] = [:]
    for shard in store.shards {
      shard.state.withLock { state in
        state.series = state.series.filter {
          $0.value.period.contains { $0 > period - Self.slotCount }
        }
        state.last = nil
        for (key, s) in state.series {
          byRoute[key.route, default: Series()].merge(s, period: period)
          byClient[key.client ?? "(anonymous)", default: Series()].merge(s, period: period)
        }
      }
    }
    // Seconds the current slot has run: windows end now, not at a slot boundary.
    let partial = now - Double(period * Self.slotSeconds)
    func summary(_ name: String, _ s: Series) -> Summary {
      Summary(
        name: name, lastMinute: s.window(slots: 6, period: period, partial: partial),
        last15Minutes: s.window(slots: Self.slotCount, period: period, partial: partial),
        requestsPerSlot: s.ordered(\.requests, period: period),
        errorsPerSlot: s.ordered(\.errors, period: period))
    }
    return Snapshot(
      routes: byRoute.sorted { $0.key < $1.key }.map { summary($0.key, $0.value) },
      clients: byClient.sorted { $0.key < $1.key }.map { summary($0.key, $0.value) })
  }
}

extension LiveStats.Series {
  mutating func clear(_ slot: Int, period p: Int) {
    period[slot] = p
    requests[slot] = 0
    errors[slot] = 0
    let base = slot * LiveStats.bucketCount
    for i in base..<base + LiveStats.bucketCount { latency[i] = 0 }
  }

  mutating func add(slot: Int, period p: Int, bucket: Int, failed: Bool) {
    if period[slot] != p { clear(slot, period: p) }
    requests[slot] &+= 1
    if failed { errors[slot] &+= 1 }
    latency[slot * LiveStats.bucketCount + bucket] &+= 1
  }

  /// Adds `other`'s slots that are still in the window ending at `period`.
  mutating func merge(_ other: Self, period now: Int) {
    for slot in 0..<LiveStats.slotCount {
      let p = other.period[slot]
      guard p > now - LiveStats.slotCount, p <= now else { continue }
      if period[slot] != p { clear(slot, period: p) }
      requests[slot] &+= other.requests[slot]
      errors[slot] &+= other.errors[slot]
      let base = slot * LiveStats.bucketCount
      for i in base..<base + LiveStats.bucketCount { latency[i] &+= other.latency[i] }
    }
  }

  func ordered(_ field: KeyPath<Self, [UInt32]>, period now: Int) -> [Int] {
    (0..<LiveStats.slotCount).map { age in
      let p = now - (LiveStats.slotCount - 1 - age)
      let slot = p % LiveStats.slotCount
      return period[slot] == p ? Int(self[keyPath: field][slot]) : 0
    }
  }

  func window(slots: Int, period now: Int, partial: Double) -> LiveStats.Window {
    var requests = 0
    var errors = 0
    var hist = [Int](repeating: 0, count: LiveStats.bucketCount)
    for p in (now - slots + 1)...now where p >= 0 {
      let slot = p % LiveStats.slotCount
      guard period[slot] == p else { continue }
      requests += Int(self.requests[slot])
      errors += Int(self.errors[slot])
      let base = slot * LiveStats.bucketCount
      for i in 0..<LiveStats.bucketCount { hist[i] += Int(latency[base + i]) }
    }
    let seconds = Double((slots - 1) * LiveStats.slotSeconds) + max(partial, 1)
    func percentile(_ q: Double) -> Double? {
      guard requests > 0 else { return nil }
      let rank = max(1, Int((q * Double(requests)).rounded(.up)))
      var seen = 0
      for (i, n) in hist.enumerated() {
        seen += n
        if seen >= rank {
          return i < LiveStats.latencyBoundsMs.count
            ? LiveStats.latencyBoundsMs[i] : .infinity
        }
      }
      return .infinity
    }
    return LiveStats.Window(
      requests: requests, errors: errors, perSecond: Double(requests) / seconds,
      p50Ms: percentile(0.5), p99Ms: percentile(0.99))
  }
}
