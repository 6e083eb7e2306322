import CCrypto
import CredproxyConfig
import EgressPolicy
import Glibc
import Wire

/// What the shared store decided for one request.
enum SharedVerdict {
  /// Admitted; `slot` holds the request's concurrency leases (nil when none is limited).
  case allowed(ConcurrencySlot?)
  case rateLimited(retryAfterSeconds: Int)
  case clientLimit(Int)
  case routeLimit(Int)
  /// The store did not answer in time or is down: the outage policy decides.
  case unavailable(String)
}

/// `rate` and `max-concurrent` for the whole fleet (`limits-store redis …`), one per event loop.
///
/// One Lua script decides a request atomically in Redis: a GCRA rate check (one key per route
/// and client holding the theoretical arrival time, in Redis's own clock, so replicas' clocks do
/// not matter) and then the concurrency limits as sorted sets of leases scored by expiry. A
/// replica renews its leases every third of the lease time and removes them when the request
/// ends; a crashed replica's leases simply expire. Scripts go by `EVALSHA`; after a Redis restart
/// (`NOSCRIPT`) the same call is made once with `EVAL`, which loads the script again.
final class SharedLimits {
  let store: LimitsStore
  let redis: RedisConnection
  let health: LimitsStoreHealth
  private let loop: EventLoop
  /// Unique per process, so lease ids never collide across replicas.
  private let replicaID: String
  private var nextLease: UInt64 = 0
  /// Leases held by requests on this loop: id → keys, for renewal.
  private var leases: [String: [String]] = [:]
  private var lastRenewMs: Int64 = 0
  private var routeKeys: (generation: Int, keys: [String]) = (-1, [])

  init(store: LimitsStore, password: String?, loop: EventLoop, health: LimitsStoreHealth) {
    self.store = store
    self.loop = loop
    self.health = health
    redis = RedisConnection(
      loop: loop, host: store.host, port: store.port, password: password,
      timeoutMs: store.timeoutMs, health: health)
    var bytes = [UInt8](repeating: 0, count: 8)
    _ = RAND_bytes(&bytes, 8)
    replicaID = Hex.encode(bytes) + "-\(loop.index)"
  }

  /// On the loop: connect, and renew leases / reconnect on the loop's tick.
  func start() {
    redis.start()
    loop.addTickHandler { [unowned self] now in
      redis.connectIfDue()
      if now - lastRenewMs >= Int64(store.leaseMs / 3) {
        lastRenewMs = now
        renewLeases()
      }
    }
  }

  /// Whether `route` has a limit the store keeps for this caller.
  func applies(route: Route, client: String?, routeIndex: Int, runtime: ProxyRuntime) -> Bool {
    route.rate != nil || runtime.concurrency.limit(for: .client(client)) != nil
      || runtime.concurrency.limit(for: .clientRoute(client, route: routeIndex)) != nil
  }

  private func key(_ kind: String, _ parts: String...) -> String {
    store.prefix + kind + ":" + parts.joined(separator: ":")
  }

  private func routeKey(_ index: Int, _ runtime: ProxyRuntime) -> String {
    if routeKeys.generation != runtime.generation {
      routeKeys = (runtime.generation, Metrics.routeLabels(runtime.config.routes.map(\.name)))
    }
    return index < routeKeys.keys.count ? routeKeys.keys[index] : "#\(index + 1)"
  }

  /// Asks the store; `completion` runs on this loop within the store's timeout.
  func admit(
    client: String?, routeIndex: Int, route: Route, runtime: ProxyRuntime,
    completion: @escaping (SharedVerdict) -> Void
  ) {
    let who = client ?? ""
    let rk = routeKey(routeIndex, runtime)
    let clientLimit = runtime.concurrency.limit(for: .client(client)) ?? 0
    let routeLimit = runtime.concurrency.limit(for: .clientRoute(client, route: routeIndex)) ?? 0
    // GCRA: one request per `interval` µs, `burst` at once.
    let interval = route.rate.map { Int64((1_000_000 / $0.perSecond).rounded(.up)) } ?? 0
    let burst = route.rate?.burst ?? 0
    nextLease &+= 1
    let lease = "\(replicaID)-\(nextLease)"
    let keys = [
      key("rate", rk, who), key("conc", "client", who), key("conc", "route", rk, who),
    ]
    let held = (clientLimit > 0 ? [keys[1]] : []) + (routeLimit > 0 ? [keys[2]] : [])
    let args = [
      String(interval), String(burst), String(clientLimit), String(routeLimit), lease,
      String(Int64(store.leaseMs) * 1000),
    ]
    let bound = LoopBound(self, loop: loop)
    // A lease granted after the caller stopped waiting is handed back at once.
    let late: (RESPValue) -> Void = { [unowned self] reply in
      if case .array(let items?) = reply, items.first?.integer == 0, !held.isEmpty {
        releaseLease(lease, keys: held)
      }
    }
    Self.admitScript.run(on: redis, keys: keys, args: args, late: late) { [unowned self] result in
      switch result {
      case .failure(let failure):
        health.unavailable.add(1, ordering: .relaxed)
        completion(
          .unavailable(
            failure == .timeout ? "no answer within \(store.timeoutMs) ms" : failure.description))
      case .success(.array(let items?)) where items.count == 2:
        let code = items[0].integer ?? -1
        let n = Int(items[1].integer ?? 0)
        switch code {
        case 0:
          guard !held.isEmpty else { return completion(.allowed(nil)) }
          leases[lease] = held
          completion(
            .allowed(
              ConcurrencySlot(onRelease: {
                bound.loop.execute { bound.value.releaseLease(lease, keys: held) }
              })))
        case 1: completion(.rateLimited(retryAfterSeconds: max(1, n)))
        case 2: completion(.clientLimit(n))
        case 3: completion(.routeLimit(n))
        default:
          health.unavailable.add(1, ordering: .relaxed)
          completion(.unavailable("unexpected answer from the store"))
        }
      case .success(let other):
        health.unavailable.add(1, ordering: .relaxed)
        completion(.unavailable("store answered \(Self.describe(other))"))
      }
    }
  }

  private func releaseLease(_ lease: String, keys: [String]) {
    leases[lease] = nil
    for k in keys { redis.send(["ZREM", k, lease], callback: nil) }
  }

  private func renewLeases() {
    guard redis.isReady, !leases.isEmpty else { return }
    for (lease, keys) in leases {
      Self.renewScript.run(
        on: redis, keys: keys, args: [lease, String(Int64(store.leaseMs) * 1000)], late: nil
      ) { _ in }
    }
  }

  /// Text of an unexpected reply, for the log (Redis error text names no secret of ours).
  static func describe(_ v: RESPValue) -> String {
    switch v {
    case .error(let e): return "error: \(e)"
    case .simple(let s): return s
    case .integer(let n): return String(n)
    case .bulk: return "a string"
    case .array: return "an array"
    }
  }

  // MARK: Scripts

  /// A Lua script sent by SHA-1 (`EVALSHA`), and in full (`EVAL`) when Redis does not know it.
  struct Script {
    let source: String
    let sha1: String

    init(_ source: String) {
      self.source = source
      var digest = [UInt8](repeating: 0, count: 20)
      let bytes = Array(source.utf8)
      _ = SHA1(bytes, bytes.count, &digest)
      sha1 = Hex.encode(digest)
    }

    func run(
      on redis: RedisConnection, keys: [String], args: [String],
      late: ((RESPValue) -> Void)?, _ callback: @escaping RedisConnection.Callback
    ) {
      let tail = [String(keys.count)] + keys + args
      redis.send(
        ["EVALSHA", sha1] + tail,
        callback: { result in
          if case .success(.error(let e)) = result, e.hasPrefix("NOSCRIPT") {
            redis.send(["EVAL", source] + tail, callback: callback, late: late)
          } else {
            callback(result)
          }
        }, late: late)
    }
  }

  /// KEYS: rate, client concurrency, route concurrency. ARGV: interval µs (0: no rate), burst,
  /// client limit, route limit (0: none), lease id, lease µs.
  /// Returns {0,0} admitted, {1,retry-after s}, {2,client limit}, {3,route limit}.
  static let admitScript = Script(
    """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local interval = tonumber(ARGV[1])
    if interval > 0 then
      local burst = tonumber(ARGV[2])
      local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
      if tat < now then tat = now end
      local new = tat + interval
      local over = new - now - burst * interval
      if over > 0 then return {1, math.ceil(over / 1000000)} end
      redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
    end
    local lease_us = tonumber(ARGV[6])
    local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
    for i = 1, 2 do
      if limits[i] > 0 then
        redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now)
        if redis.call('ZCARD', KEYS[i + 1]) >= limits[i] then return {i + 1, limits[i]} end
      end
    end
    for i = 1, 2 do
      if limits[i] > 0 then
        redis.call('ZADD', KEYS[i + 1], now + lease_us, ARGV[5])
        redis.call('PEXPIRE', KEYS[i + 1], math.ceil(lease_us / 1000) + 1000)
      end
    end
    return {0, 0}
    """)

  /// KEYS: the lease's sets. ARGV: lease id, lease µs. Pushes the lease's expiry forward (only
  /// where it still is: a lease that already expired stays gone).
  static let renewScript = Script(
    """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local lease_us = tonumber(ARGV[2])
    for i = 1, #KEYS do
      redis.call('ZADD', KEYS[i], 'XX', now + lease_us, ARGV[1])
      redis.call('PEXPIRE', KEYS[i], math.ceil(lease_us / 1000) + 1000)
    end
    return 0
    """)
}
