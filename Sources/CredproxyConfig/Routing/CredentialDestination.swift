// Where credentials may be sent: the one https-or-loopback rule for token endpoints and API base
// URLs, and the plain-http rule for minted tokens on a route (checked per request, predicted by
// `check` and `explain`).

extension URLParts {
  /// The one rule for where tokens, assertions and secrets may be sent: https, or plain http to a
  /// loopback host (local emulators and tests).
  var isSafeForCredentials: Bool { scheme == "https" || IPText.isLoopback(host) }
}

/// 127.0.0.0/8, ::1 or localhost.
public func isLoopbackHost(_ host: String) -> Bool { IPText.isLoopback(host) }

/// Where a minted token on a route may go. Over plain http a token may only cross a loopback
/// connection: the request path checks the address the connection is actually on (every request,
/// pooled or new), and `check` and `explain` predict that same decision from the config.
public enum PlainHTTPTokenRule: Sendable, Equatable {
  /// https, or no minted token: the rule does not apply.
  case notApplicable
  /// The dialled host is a loopback address or `localhost`.
  case loopback
  /// The dialled host is an address off this machine: every request gets 403 insecure_upstream.
  case refused(dialled: String)
  /// A name: allowed only if it resolves to a loopback address when dialled.
  case decidedWhenDialled(name: String)
}

extension Route {
  /// The host curl connects to for a request to `requestHost`: `connect-to`'s, else the request's.
  public func dialledHost(requestHost: String) -> String { connectTo?.host ?? requestHost }

  /// The plain-http token rule for a request to `requestHost`.
  public func plainHTTPTokenRule(requestHost: String) -> PlainHTTPTokenRule {
    guard upstream == .http, auth.usesGoogleCredentials, !deny else { return .notApplicable }
    let host = dialledHost(requestHost: requestHost)
    if IPText.isLoopback(host) { return .loopback }
    if IPAddress(host) != nil || IPAddress.inetAton(host) != nil { return .refused(dialled: host) }
    return .decidedWhenDialled(name: host)
  }
}
