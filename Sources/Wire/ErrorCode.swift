/// Every answer credproxy makes itself carries one of these in `X-Credproxy-Error`, and the access
/// log, audit log, metrics and `explain` name refusals and failures by them. One enum, so a code
/// cannot be misspelt in one place, and each carries its HTTP status and a one-line meaning (the
/// README's error table is checked against this list by a test).
public enum ErrorCode: String, CaseIterable, Sendable, CustomStringConvertible {
  // The request itself
  case badRequest = "bad_request"
  case headerTimeout = "header_timeout"
  case bodyTimeout = "body_timeout"
  case bodyTooLarge = "body_too_large"
  case requestLineTooLong = "request_line_too_long"
  case headersTooLarge = "headers_too_large"
  case expectationFailed = "expectation_failed"
  case notImplemented = "not_implemented"
  case httpVersionNotSupported = "http_version_not_supported"
  // Policy
  case noRoute = "no_route"
  case denied
  case methodNotAllowed = "method_not_allowed"
  case clientNotAllowed = "client_not_allowed"
  case tunnelDenied = "tunnel_denied"
  case misdirected
  case blockedAddress = "blocked_address"
  case insecureUpstream = "insecure_upstream"
  case placeholderCredential = "placeholder_credential"
  case proxyAuthRequired = "proxy_auth_required"
  case identityUnavailable = "identity_unavailable"
  case rateLimited = "rate_limited"
  case tooManyConcurrent = "too_many_concurrent"
  case limitsUnavailable = "limits_unavailable"
  // Credentials
  case credentialUnavailable = "credential_unavailable"
  case tokenUnavailable = "token_unavailable"
  // The upstream
  case upstreamConnect = "upstream_connect"
  case upstreamDNS = "upstream_dns"
  case upstreamTLS = "upstream_tls"
  case upstreamProtocol = "upstream_protocol"
  case upstreamTimeout = "upstream_timeout"
  case aborted
  // Logged only: the caller is gone, nobody is answered
  case clientClosed = "client_closed"
  case clientError = "client_error"

  public var description: String { rawValue }

  public var status: Int {
    switch self {
    case .badRequest: return 400
    case .headerTimeout, .bodyTimeout: return 408
    case .bodyTooLarge: return 413
    case .requestLineTooLong: return 414
    case .headersTooLarge: return 431
    case .expectationFailed: return 417
    case .notImplemented: return 501
    case .httpVersionNotSupported: return 505
    case .noRoute, .denied, .clientNotAllowed, .tunnelDenied, .blockedAddress, .insecureUpstream,
      .placeholderCredential:
      return 403
    case .methodNotAllowed: return 405
    case .misdirected: return 421
    case .proxyAuthRequired: return 407
    case .rateLimited: return 429
    case .tooManyConcurrent, .limitsUnavailable, .credentialUnavailable, .tokenUnavailable,
      .identityUnavailable:
      return 503
    case .upstreamConnect, .upstreamDNS, .upstreamTLS, .upstreamProtocol, .aborted: return 502
    case .upstreamTimeout: return 504
    case .clientClosed, .clientError: return 499
    }
  }

  /// One line: when a caller gets this code.
  public var meaning: String {
    switch self {
    case .badRequest: return "malformed request (the connection is closed after it)"
    case .headerTimeout: return "request head too slow"
    case .bodyTimeout:
      return "request body too slow (body-timeout, body-min-rate); the connection is closed"
    case .bodyTooLarge: return "request body over max-body"
    case .requestLineTooLong: return "request line over the limit"
    case .headersTooLarge: return "request head over the limit"
    case .expectationFailed: return "an Expect other than 100-continue"
    case .notImplemented: return "unsupported transfer-coding"
    case .httpVersionNotSupported: return "HTTP version other than 1.0 and 1.1"
    case .noRoute: return "no route matches (deny by default); the body names the host"
    case .denied: return "a deny route matched"
    case .methodNotAllowed: return "method not in the route's methods"
    case .clientNotAllowed: return "the route's allow list does not name this client"
    case .tunnelDenied: return "CONNECT without a tunnel or intercept route"
    case .misdirected:
      return "inside an intercepted tunnel, a request for another host than the CONNECT named"
    case .blockedAddress: return "the SSRF guard refused the address the request would be sent to"
    case .insecureUpstream:
      return "a minted token would go over plain http on a connection that is not loopback"
    case .placeholderCredential:
      return
        "a placeholder from metadata-server was sent where no route replaces it (another route, another header, the path or query); not forwarded"
    case .proxyAuthRequired: return "clients are defined and the caller identified as none"
    case .identityUnavailable:
      return
        "the caller's OIDC proxy token cannot be checked: its issuer's keys could not be fetched"
    case .rateLimited: return "over the route's rate (with Retry-After)"
    case .tooManyConcurrent: return "over a max-concurrent limit"
    case .limitsUnavailable:
      return "the shared limits store did not answer in time and limits-store says on-outage closed"
    case .credentialUnavailable:
      return "the route's secret or credential cannot be used (unset variable, unreadable key file)"
    case .tokenUnavailable:
      return "minting the route's token failed; the body names the credential and the cause"
    case .upstreamConnect: return "the upstream refused or dropped the connection"
    case .upstreamDNS: return "the upstream's name did not resolve"
    case .upstreamTLS: return "the upstream's TLS certificate or handshake failed verification"
    case .upstreamProtocol:
      return
        "the upstream's answer was not HTTP credproxy can frame (ambiguous framing closes the connection)"
    case .upstreamTimeout: return "the upstream did not answer in time"
    case .aborted: return "the upstream transfer was stopped before it completed"
    case .clientClosed: return "the caller went away mid-request (logged only)"
    case .clientError: return "the caller's connection failed (logged only)"
    }
  }

  /// Whether a caller ever sees it (the rest are written to logs only).
  public var isSentToCaller: Bool { self != .clientClosed && self != .clientError }

  /// A failure of the upstream rather than a decision of ours (counted by kind in /metrics).
  public var isUpstreamFailure: Bool {
    switch self {
    case .upstreamConnect, .upstreamDNS, .upstreamTLS, .upstreamProtocol, .upstreamTimeout:
      return true
    default:
      return false
    }
  }

  /// The code for a request the HTTP/1.1 parser refused with `status`.
  public static func forParseFailure(status: Int) -> ErrorCode {
    switch status {
    case 408: return .headerTimeout
    case 413: return .bodyTooLarge
    case 414: return .requestLineTooLong
    case 417: return .expectationFailed
    case 431: return .headersTooLarge
    case 501: return .notImplemented
    case 505: return .httpVersionNotSupported
    default: return .badRequest
    }
  }
}
