import CredproxyConfig
import EgressPolicy
import Foundation
import GoogleAuth
import XCTest

@testable import CredproxyCore

/// What a config reload keeps and what it drops: runtimes built from parsed configs the way
/// `ProxyServer.reload` builds them, and `ProxyServer.reload` itself (not started: no sockets).
final class ReloadTests: XCTestCase {
  static let environment = ["SECRET_A": "first-secret-value", "SECRET_B": "second-secret-value"]

  static let before = """
    listen 127.0.0.1:0
    access-log off
    credentials keep {
      source client-credentials token-url http://127.0.0.1:9/token client-id keep client-secret env:SECRET_A
    }
    credentials change {
      source client-credentials token-url http://127.0.0.1:9/token client-id before client-secret env:SECRET_A
    }
    credentials dropped {
      source client-credentials token-url http://127.0.0.1:9/token client-id gone client-secret env:SECRET_A
    }
    route limited.test {
      upstream http
      rate 2/m burst 2
      max-concurrent 1
    }
    route other.test {
      upstream http
    }
    """

  /// `keep` exactly as it was (same lines too, see `testACredentialBlockThatOnlyMovedKeepsItsTokens`),
  /// `change` with a new client id and secret, `dropped` removed, and a new route first, so every
  /// route index moves.
  static let after = """
    listen 127.0.0.1:0
    access-log off
    credentials keep {
      source client-credentials token-url http://127.0.0.1:9/token client-id keep client-secret env:SECRET_A
    }
    credentials change {
      source client-credentials token-url http://127.0.0.1:9/token client-id after client-secret env:SECRET_B
    }
    route new.test {
      upstream http
      rate 2/m burst 2
      max-concurrent 1
    }
    route limited.test {
      upstream http
      rate 2/m burst 2
      max-concurrent 1
    }
    route other.test {
      upstream http
    }
    """

  func runtime(_ text: String, previous: ProxyRuntime? = nil) throws -> ProxyRuntime {
    try makeRuntime(text, environment: Self.environment, previous: previous)
  }

  func take(_ runtime: ProxyRuntime, route: Int) -> RateDecision {
    runtime.rateLimiter.take(client: nil, route: route, limit: runtime.config.routes[route].rate!)
  }

  // MARK: limiters and metrics (process-wide stores, new views)

  func testRateBucketsOfAnUnchangedRouteSurviveAReloadEvenWhenTheRouteMoves() throws {
    let old = try runtime(Self.before)
    XCTAssertEqual(take(old, route: 0), .allowed)
    XCTAssertEqual(take(old, route: 0), .allowed)
    guard case .limited = take(old, route: 0) else { return XCTFail("burst 2 is spent") }

    let new = try runtime(Self.after, previous: old)
    XCTAssertEqual(new.config.routes[1].name, old.config.routes[0].name)
    guard case .limited = take(new, route: 1) else {
      return XCTFail("limited.test's bucket was refilled by the reload")
    }
    // A route that did not exist before starts with a full bucket.
    XCTAssertEqual(take(new, route: 0), .allowed)
    // Control: the same config loaded fresh (a restart) has a full bucket, so the carried-over
    // state above came from `previous`.
    XCTAssertEqual(take(try runtime(Self.after), route: 1), .allowed)
  }

  func testConcurrencyCountsSurviveAReloadAndReleaseThroughTheOldView() throws {
    let old = try runtime(Self.before)
    XCTAssertEqual(old.concurrency.tryAcquire(client: nil, route: 0), .acquired)
    XCTAssertEqual(old.concurrency.tryAcquire(client: nil, route: 0), .routeLimit(1))

    let new = try runtime(Self.after, previous: old)
    XCTAssertEqual(
      new.concurrency.tryAcquire(client: nil, route: 1), .routeLimit(1),
      "a request in flight under the old config still counts")
    XCTAssertEqual(new.concurrency.inFlight(.clientRoute(nil, route: 1)), 1)
    XCTAssertEqual(new.concurrency.tryAcquire(client: nil, route: 0), .acquired, "new route")

    // The request that began before the reload ends and releases through the view it used.
    old.concurrency.release(client: nil, route: 0)
    XCTAssertEqual(new.concurrency.inFlight(.clientRoute(nil, route: 1)), 0)
    XCTAssertEqual(new.concurrency.tryAcquire(client: nil, route: 1), .acquired)
    XCTAssertEqual(
      try runtime(Self.after).concurrency.inFlight(.clientRoute(nil, route: 1)), 0,
      "control: a fresh runtime has its own counts")
  }

  func testMetricsCountersSurviveAReload() throws {
    let old = try runtime(Self.before)
    old.metrics.recordRequest(
      routeIndex: 0, status: 200, client: nil, durationSeconds: 0.01, bytesIn: 5, bytesOut: 7)
    old.metrics.tokenMinted(credential: "keep")
    old.metrics.denial(.rateLimited)
    old.metrics.connectionOpened()

    let new = try runtime(Self.after, previous: old)
    new.metrics.recordRequest(
      routeIndex: 1, status: 200, client: nil, durationSeconds: 0.01, bytesIn: 5, bytesOut: 7)
    new.metrics.tokenMinted(credential: "keep")
    let text = new.metrics.render()
    let lines = Set(text.split(separator: "\n").map(String.init))
    XCTAssertTrue(
      lines.contains(
        "credproxy_requests_total{route=\"limited.test\",status_class=\"2xx\",client=\"\"} 2"),
      text)
    XCTAssertTrue(lines.contains("credproxy_bytes_in_total 10"), text)
    XCTAssertTrue(lines.contains("credproxy_token_mints_total{credential=\"keep\"} 2"), text)
    XCTAssertTrue(lines.contains("credproxy_denials_total{reason=\"rate_limited\"} 1"), text)
    XCTAssertTrue(lines.contains("credproxy_open_connections 1"), "a gauge stays balanced: \(text)")
    // The old view and the new one read the same store.
    XCTAssertEqual(old.metrics.render(), text)
  }

  // MARK: ProxyServer.reload and the token cache

  func fill(_ server: ProxyServer, _ credential: String, token: String) {
    let key = TokenKey(credential: credential, kind: .accessToken, scopesOrAudience: "s")
    let cache = server.broker.cache
    guard case .mustWait(startMint: true) = cache.lookup(key, now: TokenBroker.now()) else {
      return XCTFail("\(key) was already cached")
    }
    cache.complete(
      key,
      result: .success(
        MintedToken(value: token, expiresAt: TokenBroker.now() + 3600, kind: .accessToken)),
      now: TokenBroker.now()
    ).wakeAll()
  }

  func cachedCredentials(_ server: ProxyServer) -> [String] {
    server.broker.cache.snapshot().filter { $0.fingerprint != nil }.map(\.key.credential)
  }

  func testReloadDropsTheTokensOfChangedCredentialsAndKeepsTheRest() throws {
    let server = try ProxyServer(
      config: ConfigParser.parse(text: Self.before), environment: Self.environment, loopCount: 1)
    fill(server, "keep", token: "keep-token")
    fill(server, "change", token: "change-token")
    fill(server, "dropped", token: "dropped-token")
    XCTAssertEqual(cachedCredentials(server), ["change", "dropped", "keep"])

    let notes = try server.reload(
      config: ConfigParser.parse(text: Self.after), environment: Self.environment)
    XCTAssertEqual(cachedCredentials(server), ["keep"])
    XCTAssertTrue(
      notes.contains("credentials changed, their cached tokens dropped: change, dropped"),
      "\(notes)")
    let key = TokenKey(credential: "keep", kind: .accessToken, scopesOrAudience: "s")
    guard case .fresh(let token) = server.broker.cache.lookup(key, now: TokenBroker.now()) else {
      return XCTFail("keep's token did not survive")
    }
    XCTAssertEqual(token.value, "keep-token")

    // Mints begun under the old config may still fail with its secrets: both sets are redacted.
    let secrets = server.broker.secrets.withLock { $0 }
    XCTAssertTrue(secrets.contains("first-secret-value"))
    XCTAssertTrue(secrets.contains("second-secret-value"))
    XCTAssertFalse(server.broker.sanitized("x second-secret-value").contains("second-secret"))
  }

  func testReloadingTheSameConfigKeepsEveryToken() throws {
    let server = try ProxyServer(
      config: ConfigParser.parse(text: Self.before), environment: Self.environment, loopCount: 1)
    fill(server, "keep", token: "keep-token")
    fill(server, "change", token: "change-token")
    let notes = try server.reload(
      config: ConfigParser.parse(text: Self.before), environment: Self.environment)
    XCTAssertEqual(notes, [])
    XCTAssertEqual(cachedCredentials(server), ["change", "keep"])
  }

  func testTheBrokerCountsIntoTheReloadedMetrics() throws {
    let server = try ProxyServer(
      config: ConfigParser.parse(text: Self.before), environment: Self.environment, loopCount: 1)
    let before = try XCTUnwrap(server.broker.metrics.withLock { $0 })
    before.tokenMinted(credential: "keep")
    _ = try server.reload(
      config: ConfigParser.parse(text: Self.after), environment: Self.environment)
    let after = try XCTUnwrap(server.broker.metrics.withLock { $0 })
    XCTAssertFalse(after === before, "the broker still holds the old config's view")
    after.tokenMinted(credential: "keep")
    XCTAssertTrue(
      after.render().contains("credproxy_token_mints_total{credential=\"keep\"} 2"),
      after.render())
  }

  /// A credentials block that only moved (a route added above it) is the same credential: its
  /// cached tokens survive the reload (the block's line is not part of its definition).
  func testACredentialBlockThatOnlyMovedKeepsItsTokens() throws {
    let server = try ProxyServer(
      config: ConfigParser.parse(text: Self.before), environment: Self.environment, loopCount: 1)
    fill(server, "keep", token: "keep-token")
    let moved = "route first.test {\n  upstream http\n}\n" + Self.before
    let notes = try server.reload(
      config: ConfigParser.parse(text: moved), environment: Self.environment)
    XCTAssertEqual(notes, [])
    XCTAssertEqual(cachedCredentials(server), ["keep"])
  }
}
