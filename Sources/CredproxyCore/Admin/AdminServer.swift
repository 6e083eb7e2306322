import CSystem
import CredproxyConfig
import EgressPolicy
import Foundation
import Glibc
import GoogleAuth
import HTTP1
import Synchronization
import Wire

/// What the admin endpoints read, shared by the main thread (reload, drain) and loop 0 (admin).
final class ProxyState: Sendable {
  let runtime: Mutex<ProxyRuntime>
  let broker: TokenBroker
  let denials: DenialLog
  let startedAt = Date().timeIntervalSince1970
  let draining = Atomic<Bool>(false)
  let listeners: Mutex<[String]> = Mutex([])
  /// Set at start when the config has `limits-store`.
  let limitsHealth = Mutex<LimitsStoreHealth?>(nil)

  init(runtime: ProxyRuntime, broker: TokenBroker, denials: DenialLog) {
    self.runtime = Mutex(runtime)
    self.broker = broker
    self.denials = denials
  }

  var current: ProxyRuntime { runtime.withLock { $0 } }
}

/// The admin listener (`admin ADDR:PORT [token SECRET]`), on its own port so `/healthz` can never
/// collide with a proxied path. One request per connection, on loop 0, with the deadlines and
/// connection cap of `OneRequestServer`.
final class AdminListener {
  let state: ProxyState
  /// `Authorization: Bearer <token>` required when set.
  let token: String?
  private var server: OneRequestServer?

  init(fd: Int32, state: ProxyState, token: String?, loop: EventLoop) {
    self.state = state
    self.token = token
    server = OneRequestServer(fd: fd, loop: loop) { [unowned self] request in
      switch request {
      case .failure(let e):
        return Self.response(
          status: e.status, type: "text/plain; charset=utf-8", body: e.reason + "\n")
      case .success(let head):
        return answer(head)
      }
    }
  }

  private func answer(_ head: RequestHead) -> [UInt8] {
    if let token {
      let given = head.headers.first { HeaderPolicy.nameIs($0.name, "authorization") }?.value
      // The secret first: the compare's time depends only on the token's length.
      guard let given, ConstantTime.equal("Bearer " + token, given) else {
        return Self.response(
          status: 401, type: "text/plain; charset=utf-8", body: "admin token required\n",
          extra: [HeaderField(name: "WWW-Authenticate", value: "Bearer realm=\"credproxy-admin\"")])
      }
    }
    guard head.method == "GET" || head.method == "HEAD" else {
      return Self.response(status: 405, type: "text/plain; charset=utf-8", body: "GET only\n")
    }
    let path = head.pathAndQuery.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
    switch path {
    case "/healthz":
      return Self.response(status: 200, type: "text/plain; charset=utf-8", body: "ok\n", head: head)
    case "/readyz":
      let (ready, text) = AdminPages.readiness(state)
      return Self.response(
        status: ready ? 200 : 503, type: "text/plain; charset=utf-8", body: text, head: head)
    case "/metrics":
      return Self.response(
        status: 200, type: Metrics.contentType,
        body: state.current.metrics.render()
          + ((state.current.interceptCertificates as? LocalCAInterception)?.prometheusText ?? "")
          + (state.limitsHealth.withLock { $0 }?.prometheusText ?? ""),
        head: head)
    case "/status", "/":
      return Self.response(
        status: 200, type: "text/html; charset=utf-8", body: AdminPages.status(state), head: head)
    default:
      return Self.response(
        status: 404, type: "text/plain; charset=utf-8",
        body: "not found; try /healthz, /readyz, /metrics or /status\n")
    }
  }

  private static func response(
    status: Int, type: String, body: String, head: RequestHead? = nil, extra: [HeaderField] = []
  ) -> [UInt8] {
    madeResponse(
      status: status, contentType: type, body: body,
      headers: [HeaderField(name: "Cache-Control", value: "no-store")] + extra, close: true,
      includeBody: head?.method != "HEAD")
  }
}

/// The text of `/readyz` and `/status`. Names, sources and fingerprints only: never a secret.
enum AdminPages {
  static func readiness(_ state: ProxyState) -> (Bool, String) {
    let runtime = state.current
    let draining = state.draining.load(ordering: .relaxed)
    var lines = [draining ? "draining: not accepting new connections" : "ready"]
    lines.append("config: \(runtime.config.sourcePath) (\(runtime.config.routes.count) routes)")
    for l in state.listeners.withLock({ $0 }) { lines.append("listener: \(l) up") }
    let entries = state.broker.cache.snapshot()
    for name in runtime.credentials.keys.sorted() {
      let mine = entries.filter { $0.key.credential == name }
      if let failing = mine.first(where: { $0.lastError != nil && $0.consecutiveFailures > 0 }) {
        lines.append("credential \(name): failing: \(failing.lastError!)")
      } else if mine.contains(where: { $0.fingerprint != nil }) {
        lines.append("credential \(name): ok (token cached)")
      } else {
        lines.append("credential \(name): no token minted yet")
      }
    }
    return (!draining, lines.joined(separator: "\n") + "\n")
  }

  static func status(_ state: ProxyState) -> String {
    let runtime = state.current
    let now = Date().timeIntervalSince1970
    let tokens = state.broker.cache.snapshot().map { e in
      StatusPage.TokenRow(
        credential: e.key.credential,
        kind: e.key.kind == .idToken ? "ID token (OIDC)" : "access token (OAuth2)",
        scopesOrAudience: e.key.scopesOrAudience, fingerprint: e.fingerprint,
        expiresInSeconds: e.expiresAt.map { Int($0 - now) }, lastError: e.lastError,
        lastMint: e.mintInFlight
          ? "minting"
          : e.consecutiveFailures > 0
            ? "failed (\(e.consecutiveFailures) in a row)" : e.fingerprint != nil ? "ok" : "-")
    }
    let live = StatusPage.Live(
      traffic: runtime.live.snapshot(), upstreamErrors: runtime.metrics.upstreamErrorCounts(),
      openConnections: runtime.metrics.openConnections, openTunnels: runtime.metrics.openTunnels,
      limitsStore: state.limitsHealth.withLock { $0 }.map { ($0.up, $0.statusDetail) })
    return StatusPage.render(
      version: credproxyVersion, uptimeSeconds: Int(now - state.startedAt), now: now,
      routes: StatusPage.rows(for: runtime.config), tokens: tokens,
      denials: state.denials.recent(), live: live)
  }
}

/// Shown by `--version` and the status page.
public let credproxyVersion = "0.1.0"
