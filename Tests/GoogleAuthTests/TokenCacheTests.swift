import Foundation
import XCTest

@testable import GoogleAuth

/// Collects waiter calls, thread-safely.
final class WaiterLog: @unchecked Sendable {
  private let lock = NSLock()
  private var calls: [Int: [Result<MintedToken, MintFailure>]] = [:]

  func waiter(_ id: Int) -> TokenWaiter {
    { result in
      self.lock.lock()
      self.calls[id, default: []].append(result)
      self.lock.unlock()
    }
  }

  var snapshot: [Int: [Result<MintedToken, MintFailure>]] {
    lock.lock()
    defer { lock.unlock() }
    return calls
  }
}

final class TokenCacheTests: XCTestCase {
  let key = TokenKey(
    credential: "robot", kind: .accessToken, scopesOrAudience: Scopes.cacheKey(["a", "b"]))
  let t0 = 1_700_000_000.0

  func token(_ value: String = "ya29.one", expiresAt: Double) -> MintedToken {
    MintedToken(value: value, expiresAt: expiresAt, kind: .accessToken)
  }

  /// Mints `token` for `key` at `now` through the protocol; returns it.
  @discardableResult
  func prime(_ cache: TokenCache, _ minted: MintedToken, now: Double, key: TokenKey? = nil)
    -> MintedToken
  {
    let key = key ?? self.key
    XCTAssertEqual(cache.lookup(key, now: now), .mustWait(startMint: true))
    cache.complete(key, result: .success(minted), now: now).wakeAll()
    return minted
  }

  func testFreshHit() {
    let cache = TokenCache()
    let minted = prime(cache, token(expiresAt: t0 + 3600), now: t0)
    XCTAssertEqual(cache.lookup(key, now: t0 + 1), .fresh(minted))
    XCTAssertEqual(cache.lookup(key, now: t0 + 3600 - 301), .fresh(minted))
    // Reordered scopes are the same key.
    let reordered = TokenKey(
      credential: "robot", kind: .accessToken, scopesOrAudience: Scopes.cacheKey(["b,a"]))
    XCTAssertEqual(cache.lookup(reordered, now: t0 + 1), .fresh(minted))
    // Other credential, kind or scopes miss.
    let other = TokenKey(
      credential: "robot", kind: .idToken, scopesOrAudience: key.scopesOrAudience)
    XCTAssertEqual(cache.lookup(other, now: t0), .mustWait(startMint: true))
  }

  func testSingleFlightUnderConcurrency() {
    let (key, t0) = (self.key, self.t0)
    let cache = TokenCache()
    let log = WaiterLog()
    let starters = Counter()
    let waits = Counter()
    DispatchQueue.concurrentPerform(iterations: 200) { index in
      switch cache.lookup(key, now: t0, waiter: log.waiter(index)) {
      case .mustWait(startMint: true): starters.increment()
      case .mustWait(startMint: false): waits.increment()
      default: XCTFail("unexpected lookup result")
      }
    }
    XCTAssertEqual(starters.value, 1)
    XCTAssertEqual(waits.value, 199)
    XCTAssertTrue(log.snapshot.isEmpty, "nobody woken before the mint completes")
    XCTAssertEqual(cache.snapshot().first?.waiters, 200)

    let minted = token(expiresAt: t0 + 3600)
    let wakeup = cache.complete(key, result: .success(minted), now: t0 + 0.2)
    XCTAssertEqual(wakeup.waiters.count, 200)
    DispatchQueue.concurrentPerform(iterations: 4) { part in
      for (index, waiter) in wakeup.waiters.enumerated() where index % 4 == part {
        waiter(wakeup.result)
      }
    }
    let calls = log.snapshot
    XCTAssertEqual(calls.count, 200)
    for index in 0..<200 {
      XCTAssertEqual(calls[index]?.count, 1, "waiter \(index)")
      if case .success(let got)? = calls[index]?.first {
        XCTAssertEqual(got, minted)
      } else {
        XCTFail("waiter \(index) got no token")
      }
    }
    // The next completion wakes nobody again.
    XCTAssertTrue(cache.complete(key, result: .success(minted), now: t0 + 1).waiters.isEmpty)
    XCTAssertEqual(cache.lookup(key, now: t0 + 2), .fresh(minted))
  }

  func testRefreshWindowServesStaleAndStartsOneRefresh() {
    let key = self.key
    let cache = TokenCache()
    let first = prime(cache, token(expiresAt: t0 + 3600), now: t0)
    let stale = t0 + 3600 - 299  // inside the 5-minute window
    let starters = Counter()
    let served = Counter()
    DispatchQueue.concurrentPerform(iterations: 100) { _ in
      switch cache.lookup(key, now: stale, waiter: { _ in XCTFail("stale callers never wait") }) {
      case .staleServe(let got, let startRefresh):
        XCTAssertEqual(got, first)
        served.increment()
        if startRefresh { starters.increment() }
      default: XCTFail("expected staleServe")
      }
    }
    XCTAssertEqual(served.value, 100)
    XCTAssertEqual(starters.value, 1)
    XCTAssertEqual(cache.lookup(key, now: stale + 10), .staleServe(first, startRefresh: false))

    let second = token("ya29.two", expiresAt: stale + 3600)
    XCTAssertTrue(cache.complete(key, result: .success(second), now: stale + 10).waiters.isEmpty)
    XCTAssertEqual(cache.lookup(key, now: stale + 11), .fresh(second))
  }

  func testWithinExpiryMarginIsNotServed() {
    let cache = TokenCache()
    let first = prime(cache, token(expiresAt: t0 + 3600), now: t0)
    XCTAssertEqual(cache.lookup(key, now: t0 + 3600 - 31), .staleServe(first, startRefresh: true))
    // The refresh is still running when the token enters its last 30 s: callers must wait for it.
    let log = WaiterLog()
    XCTAssertEqual(
      cache.lookup(key, now: t0 + 3600 - 30, waiter: log.waiter(1)), .mustWait(startMint: false))
    XCTAssertEqual(
      cache.lookup(key, now: t0 + 3600 + 5, waiter: log.waiter(2)), .mustWait(startMint: false))
    let second = token("ya29.two", expiresAt: t0 + 7200)
    let wakeup = cache.complete(key, result: .success(second), now: t0 + 3600 + 6)
    XCTAssertEqual(wakeup.waiters.count, 2)
    wakeup.wakeAll()
    XCTAssertEqual(log.snapshot.count, 2)

    // Without a refresh in flight, a token 30 s from expiry starts a mint (nothing is served).
    let other = TokenCache()
    prime(other, token(expiresAt: t0 + 100), now: t0)
    XCTAssertEqual(other.lookup(key, now: t0 + 70), .mustWait(startMint: true))
  }

  func testShortLifetimeUsesLastQuarterAsWindow() {
    let cache = TokenCache()
    // Lifetime 400 s: window = min(300, 100) = 100 s.
    let minted = prime(cache, token(expiresAt: t0 + 400), now: t0)
    XCTAssertEqual(cache.lookup(key, now: t0 + 299), .fresh(minted))
    XCTAssertEqual(cache.lookup(key, now: t0 + 300), .staleServe(minted, startRefresh: true))
    XCTAssertEqual(cache.snapshot().first?.refreshAt, t0 + 300)

    // A per-key window given at completion.
    let custom = TokenCache()
    XCTAssertEqual(custom.lookup(key, now: t0), .mustWait(startMint: true))
    custom.complete(
      key, result: .success(token(expiresAt: t0 + 3600)), now: t0, refreshWindow: 60
    ).wakeAll()
    XCTAssertEqual(custom.snapshot().first?.refreshAt, t0 + 3540)
    guard case .fresh = custom.lookup(key, now: t0 + 3539) else { return XCTFail() }
    guard case .staleServe(_, true) = custom.lookup(key, now: t0 + 3541) else { return XCTFail() }
  }

  func testBackoffGrowsAndCapsWithoutToken() {
    let cache = TokenCache()
    let failure = TokenEndpointError.classified(
      status: 503, error: nil, errorDescription: "unavailable")
    var now = t0
    var expected: [Double] = []
    var seen: [Double] = []
    let log = WaiterLog()
    for attempt in 1...9 {
      XCTAssertEqual(
        cache.lookup(key, now: now, waiter: log.waiter(attempt)), .mustWait(startMint: true))
      let wakeup = cache.complete(key, result: .failure(failure), now: now)
      XCTAssertEqual(wakeup.waiters.count, 1)
      wakeup.wakeAll()
      guard case .failure(let mintFailure) = wakeup.result else { return XCTFail() }
      XCTAssertEqual(mintFailure.endpointError, failure)
      XCTAssertTrue(mintFailure.message.contains("HTTP 503"))
      seen.append(mintFailure.retryAfter)
      expected.append(min(60, pow(2, Double(attempt - 1))))
      // Still backing off just before the retry time.
      let delay = mintFailure.retryAfter
      guard case .backoff(let lastError, let retryAfter) = cache.lookup(key, now: now + delay - 0.5)
      else { return XCTFail("expected backoff") }
      XCTAssertTrue(lastError.contains("unavailable"))
      XCTAssertEqual(retryAfter, 0.5, accuracy: 1e-9)
      XCTAssertEqual(cache.snapshot().first?.consecutiveFailures, attempt)
      now += delay
    }
    XCTAssertEqual(seen, expected)
    XCTAssertEqual(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60])
    XCTAssertEqual(log.snapshot.count, 9)

    // Success resets the backoff.
    XCTAssertEqual(cache.lookup(key, now: now), .mustWait(startMint: true))
    let minted = token(expiresAt: now + 3600)
    cache.complete(key, result: .success(minted), now: now).wakeAll()
    XCTAssertNil(cache.snapshot().first?.lastError)
    XCTAssertEqual(cache.snapshot().first?.consecutiveFailures, 0)
    cache.evict(key)
    XCTAssertEqual(cache.lookup(key, now: now + 1), .mustWait(startMint: true))
    let wakeup = cache.complete(key, result: .failure(failure), now: now + 1)
    guard case .failure(let again) = wakeup.result else { return XCTFail() }
    XCTAssertEqual(again.retryAfter, 1)
  }

  func testValidTokenServedThroughFailures() {
    let cache = TokenCache()
    let first = prime(cache, token(expiresAt: t0 + 3600), now: t0)
    let failure = TokenEndpointError.transport("connection refused")
    var now = t0 + 3600 - 300
    // Refresh, fail, back off, retry — all while the old token keeps being served.
    var refreshes = 0
    while now < t0 + 3600 - 30 {
      switch cache.lookup(key, now: now) {
      case .staleServe(let got, let startRefresh):
        XCTAssertEqual(got, first)
        if startRefresh {
          refreshes += 1
          XCTAssertTrue(cache.complete(key, result: .failure(failure), now: now).waiters.isEmpty)
        }
      default: XCTFail("a valid token must be served at \(now - t0)")
      }
      now += 0.5
    }
    // 270 s of failures with backoff 1, 2, 4, 8, 16, 32, 60, 60, 60 → 10 attempts.
    XCTAssertEqual(refreshes, 10)
    let entry = cache.snapshot().first
    XCTAssertEqual(entry?.consecutiveFailures, 10)
    XCTAssertEqual(entry?.fingerprint, fingerprint(first.value))
    XCTAssertTrue(entry?.lastError?.contains("connection refused") == true)
    // Once within 30 s of expiry and still backing off: no token, backoff.
    guard case .backoff = cache.lookup(key, now: t0 + 3600 - 29) else {
      return XCTFail("expired token must not be served")
    }
  }

  func testEvict() {
    let cache = TokenCache()
    let first = prime(cache, token(expiresAt: t0 + 3600), now: t0)
    XCTAssertFalse(cache.evict(key, value: "ya29.other"))
    XCTAssertEqual(cache.lookup(key, now: t0 + 1), .fresh(first))
    XCTAssertTrue(cache.evict(key, value: first.value))
    XCTAssertTrue(cache.snapshot().isEmpty)
    XCTAssertFalse(cache.evict(key))

    // Evicting while a mint is in flight keeps the flight and its waiters.
    let log = WaiterLog()
    XCTAssertEqual(
      cache.lookup(key, now: t0 + 2, waiter: log.waiter(1)), .mustWait(startMint: true))
    XCTAssertEqual(
      cache.lookup(key, now: t0 + 2, waiter: log.waiter(2)), .mustWait(startMint: false))
    XCTAssertFalse(cache.evict(key))
    let second = token("ya29.two", expiresAt: t0 + 3602)
    let wakeup = cache.complete(key, result: .success(second), now: t0 + 3)
    XCTAssertEqual(wakeup.waiters.count, 2)
    wakeup.wakeAll()
    XCTAssertEqual(cache.lookup(key, now: t0 + 4), .fresh(second))
    XCTAssertTrue(cache.evict(key))
    XCTAssertEqual(cache.lookup(key, now: t0 + 5), .mustWait(startMint: true))
  }

  func testSnapshotNeverShowsTokens() {
    let cache = TokenCache()
    prime(cache, token("ya29.SECRET", expiresAt: t0 + 3600), now: t0)
    let idKey = TokenKey(credential: "robot", kind: .idToken, scopesOrAudience: "https://svc")
    XCTAssertEqual(cache.lookup(idKey, now: t0), .mustWait(startMint: true))
    let snapshot = cache.snapshot()
    XCTAssertEqual(snapshot.map(\.key), [key, idKey])
    XCTAssertEqual(snapshot[0].fingerprint, fingerprint("ya29.SECRET"))
    XCTAssertEqual(snapshot[0].expiresAt, t0 + 3600)
    XCTAssertEqual(snapshot[0].refreshAt, t0 + 3300)
    XCTAssertNil(snapshot[0].lastError)
    XCTAssertNil(snapshot[1].fingerprint)
    XCTAssertTrue(snapshot[1].mintInFlight)
    XCTAssertFalse("\(snapshot)".contains("SECRET"))
  }
}
