import Synchronization

/// What a cached token is for. Build `scopesOrAudience` with `Scopes.cacheKey` (access tokens) or
/// the audience string (ID tokens).
public struct TokenKey: Hashable, Sendable, Comparable, CustomStringConvertible {
  /// The configured credential's name.
  public var credential: String
  public var kind: TokenKind
  public var scopesOrAudience: String

  public init(credential: String, kind: TokenKind, scopesOrAudience: String) {
    self.credential = credential
    self.kind = kind
    self.scopesOrAudience = scopesOrAudience
  }

  public static func < (lhs: TokenKey, rhs: TokenKey) -> Bool {
    (lhs.credential, lhs.kind, lhs.scopesOrAudience)
      < (rhs.credential, rhs.kind, rhs.scopesOrAudience)
  }

  public var description: String { "\(credential)/\(kind.rawValue)/\(scopesOrAudience)" }
}

/// Why waiters did not get a token.
public struct MintFailure: Error, Sendable, Equatable, CustomStringConvertible {
  /// Safe to log and to return to a client (no secrets).
  public var message: String
  /// The endpoint error, when there was one.
  public var endpointError: TokenEndpointError?
  /// Seconds from the failure until the cache lets a new mint start.
  public var retryAfter: Double

  public init(message: String, endpointError: TokenEndpointError?, retryAfter: Double) {
    self.message = message
    self.endpointError = endpointError
    self.retryAfter = retryAfter
  }

  public var description: String { message }
}

/// Called exactly once with the outcome of the mint a `.mustWait` caller is waiting for.
public typealias TokenWaiter = @Sendable (Result<MintedToken, MintFailure>) -> Void

/// The answer to `TokenCache.lookup`.
public enum CacheLookup: Sendable, Equatable {
  /// A token outside its refresh window: use it.
  case fresh(MintedToken)
  /// A usable token inside its refresh window: use it. `startRefresh` is true for exactly one
  /// caller, who must mint and then call `complete`; later callers get false until then.
  case staleServe(MintedToken, startRefresh: Bool)
  /// No usable token (none, or within `expiryMargin` of expiry). The waiter was registered and
  /// will be called once. `startMint` is true for exactly one caller (single flight), who must
  /// mint and then call `complete`.
  case mustWait(startMint: Bool)
  /// No usable token and the last mint failed less than the backoff ago; nothing was registered.
  /// `retryAfter` is seconds from now.
  case backoff(lastError: String, retryAfter: Double)
}

/// One entry of `TokenCache.snapshot()`, for a status page. Holds the token's fingerprint only.
public struct CacheEntrySnapshot: Sendable, Equatable {
  public var key: TokenKey
  public var fingerprint: String?
  public var expiresAt: Double?
  /// When the entry starts being refreshed ahead of expiry.
  public var refreshAt: Double?
  public var lastError: String?
  public var consecutiveFailures: Int
  /// While backing off: when the next mint may start.
  public var retryAt: Double?
  public var mintInFlight: Bool
  public var waiters: Int
}

/// The token cache's state machine: single-flight minting, refresh-ahead, per-key exponential
/// backoff. It performs no I/O and owns no threads; all methods are thread-safe (one mutex) and
/// never call out while holding it. Time is always passed in (`now`, seconds since the epoch).
///
/// Protocol for callers:
/// 1. `lookup(key, now:, waiter:)`.
/// 2. On `.staleServe(_, startRefresh: true)` or `.mustWait(startMint: true)`, mint a token and
///    then — always, success or failure — call `complete(key, result:, now:)`.
/// 3. `complete` returns a `Wakeup`; call `wakeAll()` on it (outside any lock of yours), or deliver
///    `result` to each of `waiters` yourself. Every `.mustWait` caller's waiter, including the
///    minter's own, is in exactly one `Wakeup`.
public final class TokenCache: Sendable {
  /// A token is never served within this many seconds of its expiry.
  public let expiryMargin: Double
  /// Refresh-ahead window used when `complete` is not given one.
  public let defaultRefreshWindow: Double
  public let initialBackoff: Double
  public let maxBackoff: Double

  private let entries = Mutex<[TokenKey: Entry]>([:])

  private struct Entry {
    var token: MintedToken?
    var fingerprint: String?
    var refreshAt = 0.0
    var mintInFlight = false
    var waiters: [TokenWaiter] = []
    var failures = 0
    var lastError: String?
    var retryAt = 0.0
  }

  public init(
    expiryMargin: Double = 30, defaultRefreshWindow: Double = 300, initialBackoff: Double = 1,
    maxBackoff: Double = 60
  ) {
    self.expiryMargin = expiryMargin
    self.defaultRefreshWindow = defaultRefreshWindow
    self.initialBackoff = initialBackoff
    self.maxBackoff = maxBackoff
  }

  /// Looks `key` up at time `now`. `waiter` is kept (and later called exactly once) only when the
  /// answer is `.mustWait`; otherwise it is dropped without being called. With a nil waiter a
  /// `.mustWait` caller is not notified and must look up again.
  public func lookup(_ key: TokenKey, now: Double, waiter: TokenWaiter? = nil) -> CacheLookup {
    entries.withLock { entries in
      var entry = entries[key] ?? Entry()
      defer { entries[key] = entry }
      let backingOff = entry.failures > 0 && now < entry.retryAt
      if let token = entry.token, now < token.expiresAt - expiryMargin {
        if now < entry.refreshAt { return .fresh(token) }
        if entry.mintInFlight || backingOff { return .staleServe(token, startRefresh: false) }
        entry.mintInFlight = true
        return .staleServe(token, startRefresh: true)
      }
      if entry.mintInFlight {
        if let waiter { entry.waiters.append(waiter) }
        return .mustWait(startMint: false)
      }
      if backingOff {
        return .backoff(
          lastError: entry.lastError ?? "token mint failed", retryAfter: entry.retryAt - now)
      }
      entry.mintInFlight = true
      if let waiter { entry.waiters.append(waiter) }
      return .mustWait(startMint: true)
    }
  }

  /// Records the outcome of the mint started for `key`. A token is stored (its refresh window is
  /// `min(defaultRefreshWindow, lifetime / 4)`, or `refreshWindow` as given when the operator set
  /// one, never more than the lifetime) and the backoff reset; a failure
  /// keeps any still-valid token and backs off `initialBackoff × 2^(n-1)`, capped at `maxBackoff`.
  public func complete(
    _ key: TokenKey, result: Result<MintedToken, TokenEndpointError>, now: Double,
    refreshWindow: Double? = nil
  ) -> Wakeup {
    switch result {
    case .success(let token):
      let print = fingerprint(token.value)
      let lifetime = max(0, token.expiresAt - now)
      let window =
        refreshWindow.map { min($0, lifetime) } ?? min(defaultRefreshWindow, lifetime / 4)
      let waiters = entries.withLock { entries in
        var entry = entries[key] ?? Entry()
        entry.token = token
        entry.fingerprint = print
        entry.refreshAt = token.expiresAt - window
        entry.failures = 0
        entry.lastError = nil
        entry.retryAt = 0
        entry.mintInFlight = false
        let waiters = entry.waiters
        entry.waiters = []
        entries[key] = entry
        return waiters
      }
      return Wakeup(waiters: waiters, result: .success(token))
    case .failure(let error):
      let message = error.description
      let (waiters, delay) = entries.withLock { entries in
        var entry = entries[key] ?? Entry()
        entry.failures += 1
        let delay = backoff(afterFailures: entry.failures)
        entry.retryAt = now + delay
        entry.lastError = message
        entry.mintInFlight = false
        let waiters = entry.waiters
        entry.waiters = []
        entries[key] = entry
        return (waiters, delay)
      }
      return Wakeup(
        waiters: waiters,
        result: .failure(MintFailure(message: message, endpointError: error, retryAfter: delay)))
    }
  }

  /// The backoff after `failures` consecutive failures: 1 s, 2 s, 4 s, … capped at `maxBackoff`.
  public func backoff(afterFailures failures: Int) -> Double {
    guard failures > 0 else { return 0 }
    return min(maxBackoff, initialBackoff * Double(1 << min(failures - 1, 40)))
  }

  /// Drops `key`'s token (e.g. after the upstream answered 401 `invalid_token`). With `value`, only
  /// when the cached token is that one — a newer token minted meanwhile stays. An in-flight mint
  /// and its waiters are unaffected. Returns whether a token was dropped.
  @discardableResult
  public func evict(_ key: TokenKey, value: String? = nil) -> Bool {
    entries.withLock { entries in
      guard var entry = entries[key], let token = entry.token else { return false }
      if let value, value != token.value { return false }
      entry.token = nil
      entry.fingerprint = nil
      entry.refreshAt = 0
      if !entry.mintInFlight && entry.waiters.isEmpty && entry.failures == 0 {
        entries[key] = nil
      } else {
        entries[key] = entry
      }
      return true
    }
  }

  /// Every entry, sorted by key, without token values.
  public func snapshot() -> [CacheEntrySnapshot] {
    entries.withLock { entries in
      entries.map { key, entry in
        CacheEntrySnapshot(
          key: key, fingerprint: entry.fingerprint, expiresAt: entry.token?.expiresAt,
          refreshAt: entry.token == nil ? nil : entry.refreshAt, lastError: entry.lastError,
          consecutiveFailures: entry.failures,
          retryAt: entry.failures > 0 ? entry.retryAt : nil, mintInFlight: entry.mintInFlight,
          waiters: entry.waiters.count)
      }
    }.sorted { $0.key < $1.key }
  }

  /// The waiters a `complete` released, with the result to give them.
  public struct Wakeup: Sendable {
    public let waiters: [TokenWaiter]
    public let result: Result<MintedToken, MintFailure>

    /// Calls every waiter with `result`, in registration order, on the calling thread.
    public func wakeAll() {
      for waiter in waiters { waiter(result) }
    }
  }
}
