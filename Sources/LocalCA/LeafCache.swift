import CCrypto
import Glibc
import Synchronization

/// A server `SSL_CTX*` for one intercepted host, owned by this object (`SSL_CTX_free` in
/// `deinit`). Configured once, never modified afterwards, so `SSL_new(ctx)` may be called from
/// any thread. To hand it to code that frees the context itself, `SSL_CTX_up_ref(ctx)` first.
/// An `SSL*` made from it holds its own reference to the context.
public final class ServerContext: @unchecked Sendable {
  public let ctx: OpaquePointer
  /// The leaf it serves.
  public let leaf: Leaf

  /// Takes ownership of `ctx`.
  init(ctx: OpaquePointer, leaf: Leaf) {
    self.ctx = ctx
    self.leaf = leaf
  }

  deinit { SSL_CTX_free(ctx) }
}

/// Leaves and their TLS contexts per host, shared by every event loop. A lookup is one lock and
/// one dictionary probe; a miss mints outside the lock (a loop is never blocked by another loop's
/// mint; two loops missing the same host at once may both mint, and the first stored wins).
/// A leaf is renewed once less than `renewBefore` of its validity is left (default: one day of
/// seven), well before clients would reject it. At most `capacity` hosts are kept; the oldest
/// minted is evicted first.
public final class LeafCache: Sendable {
  public struct Statistics: Sendable, Equatable {
    /// Leaves minted (first use of a host, renewals, and after eviction).
    public var minted: Int = 0
    /// Time spent minting them (key-signing, certificate and TLS context), nanoseconds.
    public var mintNanoseconds: UInt64 = 0
    /// Lookups answered from the cache.
    public var hits: Int = 0
    /// Entries evicted to stay within `capacity`.
    public var evicted: Int = 0
    /// Hosts cached now.
    public var entries: Int = 0
  }

  struct Entry {
    var context: ServerContext
    /// Position in mint order, for eviction.
    var sequence: UInt64
  }

  struct State {
    var entries: [String: Entry] = [:]
    /// Hosts in mint order with the sequence they were minted at; stale pairs (renewed or
    /// evicted hosts) are skipped when met.
    var order: [(host: String, sequence: UInt64)] = []
    var orderStart = 0
    var nextSequence: UInt64 = 0
    var stats = Statistics()
  }

  /// Each host costs about 17 KiB (the leaf, its SSL_CTX with cipher list and ticket keys): 2,000
  /// are about 35 MiB, within a sidecar's memory limit even when a client names a new host under
  /// a wildcard route on every CONNECT (10,000 were 170 MiB). A host evicted is minted again on
  /// its next CONNECT, one signature.
  public static let defaultCapacity = 2_000
  public let ca: LocalCA
  public let capacity: Int
  public let renewBefore: Int
  public let lifetime: Int
  let clock: @Sendable () -> Int
  let configure: (@Sendable (OpaquePointer) -> Void)?
  let state = Mutex(State())

  /// `configure` runs on each new `SSL_CTX*` before it is cached and shared (e.g. to add the
  /// proxy's SNI callback, `cp_ssl_ctx_set_servername_callback`); it must not keep the pointer.
  public init(
    ca: LocalCA, capacity: Int = LeafCache.defaultCapacity, lifetime: Int = 7 * 86_400,
    renewBefore: Int = 86_400,
    clock: @escaping @Sendable () -> Int = { Int(time(nil)) },
    configure: (@Sendable (OpaquePointer) -> Void)? = nil
  ) {
    self.configure = configure
    self.ca = ca
    self.capacity = max(1, capacity)
    self.lifetime = lifetime
    self.renewBefore = renewBefore
    self.clock = clock
  }

  /// The TLS context for `host` (a DNS name or IP literal, as the CONNECT named it), from the
  /// cache or freshly minted.
  public func serverContext(forHost host: String) throws(LocalCAError) -> ServerContext {
    let key = host.lowercased()
    let now = clock()
    let cached = state.withLock { s -> ServerContext? in
      guard let e = s.entries[key], e.context.leaf.notAfter - now > renewBefore else { return nil }
      s.stats.hits += 1
      return e.context
    }
    if let cached { return cached }

    let started = DispatchFreeClock.nanoseconds()
    let leaf = try ca.leaf(for: host, now: now, lifetime: lifetime)
    let ctx = try leaf.makeServerContext()
    configure?(ctx)
    let context = ServerContext(ctx: ctx, leaf: leaf)
    let elapsed = DispatchFreeClock.nanoseconds() &- started

    return state.withLock { s -> ServerContext in
      s.stats.minted += 1
      s.stats.mintNanoseconds &+= elapsed
      // Another thread may have stored a fresh one meanwhile: keep one context per host.
      if let e = s.entries[key], e.context.leaf.notAfter - now > renewBefore {
        return e.context
      }
      let sequence = s.nextSequence
      s.nextSequence += 1
      s.entries[key] = Entry(context: context, sequence: sequence)
      s.order.append((key, sequence))
      while s.entries.count > capacity, s.orderStart < s.order.count {
        let (oldest, seq) = s.order[s.orderStart]
        s.orderStart += 1
        if s.entries[oldest]?.sequence == seq {
          s.entries[oldest] = nil
          s.stats.evicted += 1
        }
      }
      // Drop consumed order slots once they are half the array.
      if s.orderStart > 64 && s.orderStart * 2 > s.order.count {
        s.order.removeFirst(s.orderStart)
        s.orderStart = 0
      }
      if s.order.count - s.orderStart > 4 * capacity { compact(&s) }
      s.stats.entries = s.entries.count
      return context
    }
  }

  /// The leaf for `host` (what `serverContext(forHost:)` serves).
  public func leaf(for host: String) throws(LocalCAError) -> Leaf {
    try serverContext(forHost: host).leaf
  }

  /// Counters for metrics and the benchmark.
  public var statistics: Statistics { state.withLock { $0.stats } }

  /// Rebuilds the order list from live entries (renewals leave stale pairs behind).
  private func compact(_ s: inout State) {
    s.order = s.entries.map { ($0.key, $0.value.sequence) }.sorted { $0.sequence < $1.sequence }
    s.orderStart = 0
  }
}

/// A monotonic clock without Foundation or Dispatch.
enum DispatchFreeClock {
  static func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }
}
