import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

/// What the access and audit logs say about one request, filled in as it is decided.
struct LogContext {
  var method: String
  /// `host[:port]` as the caller named it.
  var host: String
  var hostName: String
  var port: Int?
  /// Path only: the query string can carry secrets (the audit log may keep it, redacted).
  var path: String
  var query: String?
  var scheme = "https"
  /// `intercept` for requests read inside an intercepted CONNECT tunnel.
  var via: String?
  var routeNumber: Int?
  var client: String?
  /// The claims an OIDC client matched (`repository=myorg/deploy`), for the audit log.
  var clientClaims: [String]?
  var decision = AuditDecision.allow
  var reason: ErrorCode?
  /// A credentials block name or a secret's source (`env:NAME`), never a value.
  var credential: String?
  var tokenFingerprint: String?
  /// What the injected minted token was for (scope set or audience), for the audit log.
  var tokenScopes: String?
  var tokenAudience: String?
  var startedMs: Int64

  var route: String { routeNumber.map { "#\($0)" } ?? "-" }

  init(method: String, host: String, path: String, startedMs: Int64) {
    self.method = method
    self.host = host
    hostName = host
    self.path = path
    self.startedMs = startedMs
  }

  init(head: RequestHead, startedMs: Int64) {
    let full = head.pathAndQuery
    var path = full
    var query: String? = nil
    if let mark = full.utf8.firstIndex(of: 0x3F) {  // "?"
      path = String(full[..<mark])
      query = String(full[full.utf8.index(after: mark)...])
    }
    self.init(
      method: head.method, host: head.authority?.description ?? "-", path: path,
      startedMs: startedMs)
    self.query = query
    hostName = head.authority?.host ?? "-"
    port = head.authority?.port
  }

  mutating func deny(_ code: ErrorCode) {
    decision = .deny
    reason = code
  }

  /// Report mode: would have been denied for `code`, let through.
  mutating func report(_ code: ErrorCode) {
    decision = .report
    if reason == nil { reason = code }  // the first reason is the one that decided
  }
}

/// Holds one concurrency slot; released when the request is over (the last reference goes),
/// on the limiter it was taken from even if the config was reloaded since.
final class ConcurrencySlot: Sendable {
  private let onRelease: @Sendable () -> Void

  private let released = Atomic<Bool>(false)

  init(_ limiter: ConcurrencyLimiter, client: String?, route: Int) {
    onRelease = { limiter.release(client: client, route: route) }
  }

  /// A slot held somewhere else: leases in the shared limits store.
  init(onRelease: @escaping @Sendable () -> Void) {
    self.onRelease = onRelease
  }

  /// Gives the slot back as soon as the answer is decided, before its last bytes are written:
  /// a client that waits for each response must never find its previous request still counted.
  func release() {
    if !released.exchange(true, ordering: .acquiringAndReleasing) { onRelease() }
  }

  deinit { release() }
}

/// A routed request, decided and ready to send (kept for a retry with a fresh token).
struct Forward {
  let head: RequestHead
  let prepared: PreparedRoute
  var route: Route { prepared.route }
  var log: LogContext
  /// `https://host:port`
  let origin: String
  let pathAndQuery: String
  let maxBody: UInt64
  /// The config the request started under; a reload does not change it mid-flight.
  let runtime: ProxyRuntime
  /// SSRF rules for the address curl dials.
  let dial: DialCheck
  let slot: ConcurrencySlot?

  /// `OPTIONS *`: a question about the server, not about a resource.
  var asksServerOptions: Bool { head.target == .asterisk }
}

/// The state of one request/response on a connection.
final class Exchange {
  enum ResponseFraming: Equatable {
    case none, contentLength(UInt64), chunked, untilClose

    /// Whether a body of `sent` bytes is the whole body this framing announced.
    func isComplete(after sent: UInt64) -> Bool {
      if case .contentLength(let n) = self { return sent == n }
      return true
    }
  }

  let forward: Forward
  var head: RequestHead { forward.head }
  var log: LogContext
  var upstream: String { forward.origin }
  let requestTimeoutMs: Int
  var body: BodyDecoder
  var transfer: UpstreamTransfer?
  var bodyError: HTTPParseError?
  /// When the request body was fully read (or the start, for requests without one); 0 before.
  var bodyDoneMs: Int64 = 0
  /// While the body is awaited from the caller: the time by which more must have arrived.
  var bodyDeadlineMs: Int64 = 0
  var framing = ResponseFraming.none
  var headSent = false
  /// The upstream sent more body than its Content-Length: the connection must close.
  var overran = false
  var sentContinue = false
  /// The minted token this attempt carries, so a 401 `invalid_token` can evict exactly it.
  var token: (request: TokenRequest, value: MintedToken)?
  var retriedWithFreshToken = false
  /// Request bodies up to this size are kept on minted-token routes so a retry can replay them.
  static let keptBodyLimit: UInt64 = 64 * 1024
  var keptBody: [UInt8]?
  /// While replaying `keptBody` to the retry: how much was sent.
  var replayOffset: Int?
  var status = 0
  var bytesIn: UInt64 = 0
  var bytesOut: UInt64 = 0
  var keepAlive: Bool

  init(forward: Forward, requestTimeoutMs: Int) {
    self.forward = forward
    log = forward.log
    self.requestTimeoutMs = requestTimeoutMs
    body = BodyDecoder(framing: forward.head.framing, maxBody: forward.maxBody)
    keepAlive = forward.head.keepAlive
    if body.isComplete { bodyDoneMs = forward.log.startedMs }
  }
}

extension Exchange {
  /// `bytes` of body arrived: with a minimum rate each byte buys 1/rate s (never more than a
  /// whole `body-timeout` ahead); without one, any progress restarts the silence timer.
  func creditBody(_ bytes: UInt64, config: ProxyConfig) {
    let now = EventLoop.nowMs()
    let ceiling = now + Int64(config.bodyTimeoutMs)
    guard config.bodyMinRate > 0 else {
      bodyDeadlineMs = ceiling
      return
    }
    let earned = Int64(
      min(bytes.multipliedReportingOverflow(by: 1000).partialValue / config.bodyMinRate, 1 << 40))
    bodyDeadlineMs = min(ceiling, bodyDeadlineMs + earned)
  }
}
