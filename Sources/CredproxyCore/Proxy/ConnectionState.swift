import CredproxyConfig
import HTTP1

/// What a client connection is doing, as one value: what each state owns travels with it, so
/// impossible combinations (an exchange while tunnelling, a tunnel log without a tunnel, a
/// transfer on a closed connection) cannot be written down.
///
///     idle ─byte─▶ readingHead ─head─▶ awaitingToken ─token─▶ exchanging ─answer─▶ idle
///       ▲                          │        ▲                   │  │ 401 invalid_token
///       │                          ├────────┼───────────────────┘  └────▶ awaitingToken
///       │                          └─CONNECT─▶ dialing ─connected─▶ tunneling
///       └──── keep-alive ◀── (any) ─error / close / unread body──▶ closing ─flushed─▶ closed
///
/// With `limits-store`, a routed request whose route is limited first waits in `awaitingLimits`
/// (at most the store's timeout) and is then routed again with the store's answer.
enum ConnectionState {
  /// Between requests, waiting for the first byte (idle-timeout applies).
  case idle
  /// Part of a request head is in (header-timeout applies from `startedMs`).
  case readingHead(startedMs: Int64)
  /// Routed; the broker is minting the route's token. `retrying` is the exchange whose token the
  /// upstream rejected (401 `invalid_token`): its log and kept body go on with the new token.
  /// (`indirect`: a `Forward` is large, and every other state would pay for its size on every
  /// copy of the state.)
  indirect case awaitingToken(Forward, retrying: Exchange?)
  /// The caller's OIDC proxy token waits for its issuer's keys (fetched on this loop's multi).
  indirect case awaitingIdentity(RequestHead, LogContext)
  /// Routed; the shared limits store (`limits-store`) is deciding `rate` and `max-concurrent`.
  /// Its answer (or its timeout) comes within the store's timeout and routes the request again.
  case awaitingLimits
  /// One request/response with the upstream.
  case exchanging(Exchange)
  /// CONNECT allowed; resolving and dialling the target.
  case dialing(Tunnel)
  /// CONNECT established: bytes pass through untouched both ways.
  case tunneling(Tunnel)
  /// A final answer is queued; the connection closes once it is written. Nothing more is read.
  case closing
  case closed

  var name: String {
    switch self {
    case .idle: return "idle"
    case .readingHead: return "readingHead"
    case .awaitingToken: return "awaitingToken"
    case .awaitingIdentity: return "awaitingIdentity"
    case .awaitingLimits: return "awaitingLimits"
    case .exchanging: return "exchanging"
    case .dialing: return "dialing"
    case .tunneling: return "tunneling"
    case .closing: return "closing"
    case .closed: return "closed"
    }
  }

  /// The exchange this state owns, if any.
  var exchange: Exchange? {
    switch self {
    case .exchanging(let ex): return ex
    case .awaitingToken(_, let retrying): return retrying
    default: return nil
    }
  }

  var tunnel: Tunnel? {
    switch self {
    case .dialing(let t), .tunneling(let t): return t
    default: return nil
    }
  }

  /// Whether a request is under way (a client that leaves now aborts it).
  var isBusy: Bool {
    switch self {
    case .readingHead, .awaitingLimits, .awaitingToken, .awaitingIdentity, .exchanging, .dialing:
      return true
    case .idle, .tunneling, .closing, .closed: return false
    }
  }
}

/// A CONNECT tunnel: the upstream socket and what the log will say about it.
final class Tunnel {
  let upstream: TunnelUpstream
  var log: LogContext
  var bytesUp: UInt64 = 0
  var bytesDown: UInt64 = 0
  let dialStartedMs: Int64
  let connectTimeoutMs: Int

  init(upstream: TunnelUpstream, log: LogContext, dialStartedMs: Int64, connectTimeoutMs: Int) {
    self.upstream = upstream
    self.log = log
    self.dialStartedMs = dialStartedMs
    self.connectTimeoutMs = connectTimeoutMs
  }
}

/// A CONNECT on an `intercept` route, for the rest of the connection: the target every inner
/// request must name, and who the caller is (identified once, by the CONNECT).
struct InterceptSession {
  /// Canonical host (lowercase, IPv6 without brackets) and port of the CONNECT.
  let host: String
  let port: Int
  let isIPv6: Bool
  /// The client the CONNECT identified (Proxy-Authorization or `from`); nil: anonymous.
  let client: String?
  /// The claims an OIDC client matched on the CONNECT, for the inner requests' audit records.
  var clientClaims: [String]? = nil

  /// Whether `authority` (an inner request's Host or absolute-form target) names the target.
  /// A missing port means 443: inside the tunnel the caller speaks https.
  func binds(_ authority: Authority) -> Bool {
    CanonicalHost(authority.host).text == CanonicalHost(host).text
      && (authority.port ?? 443) == port
  }
}
