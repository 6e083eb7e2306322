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

  init(runtime: ProxyRuntime, broker: TokenBroker, denials: DenialLog) {
    self.runtime = Mutex(runtime)
    self.broker = broker
    self.denials = denials
  }

  var current: ProxyRuntime { runtime.withLock { $0 } }
}

/// The admin listener (`admin ADDR:PORT [token SECRET]`), on its own port so `/healthz` can never
/// collide with a proxied path. One request per connection; loop 0 serves it.
///
/// Admin connections are held to fixed deadlines, checked on the loop's tick (a silent peer sends
/// no events, so an event-driven check never fires): the whole request head within
/// `headerDeadlineMs` of the accept, and no `idleDeadlineMs` without a byte read or written. At
/// most `maxConnections` are open at once; past that a new connection is closed at once.
final class AdminListener {
  static let headerDeadlineMs: Int64 = 10_000
  static let idleDeadlineMs: Int64 = 5_000
  static let maxConnections = 64

  let state: ProxyState
  /// `Authorization: Bearer <token>` required when set.
  let token: String?
  unowned let loop: EventLoop
  private var acceptor: Listener?
  fileprivate var connections: [ObjectIdentifier: AdminConnection] = [:]

  init(fd: Int32, state: ProxyState, token: String?, loop: EventLoop) {
    self.state = state
    self.token = token
    self.loop = loop
    let acceptor = Listener(fd: fd, loop: loop) { [unowned self] client, _ in
      guard connections.count < Self.maxConnections else {
        close(client)
        return
      }
      let c = AdminConnection(fd: client, listener: self)
      connections[ObjectIdentifier(c)] = c
      c.start()
    }
    acceptor.start()
    self.acceptor = acceptor
    loop.addTickHandler { [unowned self] now in
      for c in Array(connections.values) { c.tick(nowMs: now) }
    }
  }

  /// Admin connections open now.
  var connectionCount: Int { connections.count }
}

final class AdminConnection: EventHandler {
  private let fd: Int32
  private let listener: AdminListener
  private let input = ByteBuffer()
  private let output = ByteBuffer()
  private var parser = RequestHeadParser()
  private let startedMs = EventLoop.nowMs()
  private var lastActivityMs = EventLoop.nowMs()
  private var headComplete = false
  private var closed = false

  init(fd: Int32, listener: AdminListener) {
    self.fd = fd
    self.listener = listener
  }

  func start() {
    listener.loop.register(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, handler: self)
  }

  /// Called on every tick: enforces the header and idle deadlines.
  func tick(nowMs: Int64) {
    if !headComplete && nowMs - startedMs > AdminListener.headerDeadlineMs { return finish() }
    if nowMs - lastActivityMs > AdminListener.idleDeadlineMs { return finish() }
  }

  func handleEvents(fd: Int32, events: UInt32) {
    if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { return finish() }
    if events & EPOLLOUT.rawValue != 0 { return flush() }
    if headComplete { return }
    let n = input.fill(max: 16 * 1024) { Glibc.read(fd, $0, $1) }
    if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return finish() }
    if n > 0 { lastActivityMs = EventLoop.nowMs() }
    switch input.withReadableBytes({ parser.parse($0) }) {
    case .needMore:
      return
    case .failed(let e):
      headComplete = true
      respond(status: e.status, type: "text/plain; charset=utf-8", body: e.reason + "\n")
    case .complete(let head, _):
      headComplete = true
      answer(head)
    }
  }

  private func answer(_ head: RequestHead) {
    if let token = listener.token {
      let given = head.headers.first { HeaderPolicy.nameIs($0.name, "authorization") }?.value
      // The secret first: the compare's time depends only on the token's length.
      guard let given, ConstantTime.equal("Bearer " + token, given) else {
        return respond(
          status: 401, type: "text/plain; charset=utf-8", body: "admin token required\n",
          extra: [HeaderField(name: "WWW-Authenticate", value: "Bearer realm=\"credproxy-admin\"")])
      }
    }
    guard head.method == "GET" || head.method == "HEAD" else {
      return respond(status: 405, type: "text/plain; charset=utf-8", body: "GET only\n")
    }
    let path = head.pathAndQuery.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
    let state = listener.state
    switch path {
    case "/healthz":
      respond(status: 200, type: "text/plain; charset=utf-8", body: "ok\n", head: head)
    case "/readyz":
      let (ready, text) = AdminPages.readiness(state)
      respond(status: ready ? 200 : 503, type: "text/plain; charset=utf-8", body: text, head: head)
    case "/metrics":
      respond(
        status: 200, type: Metrics.contentType, body: state.current.metrics.render(), head: head)
    case "/status", "/":
      respond(
        status: 200, type: "text/html; charset=utf-8", body: AdminPages.status(state), head: head)
    default:
      respond(
        status: 404, type: "text/plain; charset=utf-8",
        body: "not found; try /healthz, /readyz, /metrics or /status\n")
    }
  }

  private func respond(
    status: Int, type: String, body: String, head: RequestHead? = nil, extra: [HeaderField] = []
  ) {
    output.append(
      madeResponse(
        status: status, contentType: type, body: body,
        headers: [HeaderField(name: "Cache-Control", value: "no-store")] + extra, close: true,
        includeBody: head?.method != "HEAD"))
    flush()
  }

  private func flush() {
    while !output.isEmpty {
      let n = output.drain { Glibc.write(fd, $0, $1) }
      if n > 0 { lastActivityMs = EventLoop.nowMs() }
      if n < 0 && errno == EAGAIN {
        listener.loop.modify(fd, events: EPOLLOUT.rawValue)
        return
      }
      if n <= 0 { break }
    }
    finish()
  }

  private func finish() {
    guard !closed else { return }
    closed = true
    listener.loop.unregister(fd)
    close(fd)
    listener.connections[ObjectIdentifier(self)] = nil
  }
}

/// Equal strings, compared without an early exit (the admin token must not leak by timing).
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
        expiresInSeconds: e.expiresAt.map { Int($0 - now) }, lastError: e.lastError)
    }
    return StatusPage.render(
      version: credproxyVersion, uptimeSeconds: Int(now - state.startedAt), now: now,
      routes: StatusPage.rows(for: runtime.config), tokens: tokens,
      denials: state.denials.recent())
  }
}

/// Shown by `--version` and the status page.
public let credproxyVersion = "0.1.0"
