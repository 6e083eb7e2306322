/// The parsed head of one inbound HTTP/1.1 request: what the strict parser hands the proxy.
public struct RequestHead: Sendable, Equatable {
  public enum Version: Sendable, Equatable { case http10, http11 }

  /// The request-target, already split by form (RFC 9112 §3.2).
  public enum Target: Sendable, Equatable {
    /// `/path?query` — the authority comes from `Host`.
    case origin(pathAndQuery: String)
    /// `http://host:port/path?query` — as `HTTP_PROXY` clients send; its authority wins over `Host`.
    case absolute(scheme: String, authority: Authority, pathAndQuery: String)
    /// `host:port` — CONNECT only.
    case authority(Authority)
    /// `*` — OPTIONS only.
    case asterisk
  }

  public enum BodyFraming: Sendable, Equatable {
    case none
    case contentLength(UInt64)
    case chunked
  }

  public var method: String
  public var target: Target
  public var version: Version
  /// Header fields in arrival order, names and values exactly as received (values trimmed of OWS).
  public var headers: [HeaderField]
  public var framing: BodyFraming
  /// False when the client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive).
  public var keepAlive: Bool
  /// The client sent `Expect: 100-continue`.
  public var expectContinue: Bool
  /// The authority to route on: the absolute-form/authority-form target's, else `Host`'s.
  public var authority: Authority?

  public init(
    method: String, target: Target, version: Version, headers: [HeaderField],
    framing: BodyFraming, keepAlive: Bool, expectContinue: Bool, authority: Authority?
  ) {
    self.method = method
    self.target = target
    self.version = version
    self.headers = headers
    self.framing = framing
    self.keepAlive = keepAlive
    self.expectContinue = expectContinue
    self.authority = authority
  }

  /// The path and query to send upstream (`*` for asterisk-form, empty for authority-form).
  public var pathAndQuery: String {
    switch target {
    case .origin(let p): return p
    case .absolute(_, _, let p): return p
    case .authority: return ""
    case .asterisk: return "*"
    }
  }
}

public struct HeaderField: Sendable, Equatable {
  public var name: String
  public var value: String
  public init(name: String, value: String) {
    self.name = name
    self.value = value
  }
}

/// A host and optional port, normalised: host lowercased, IPv6 kept without brackets.
public struct Authority: Sendable, Equatable, Hashable {
  public var host: String
  public var port: Int?
  public var isIPv6: Bool
  public init(host: String, port: Int?, isIPv6: Bool = false) {
    self.host = host
    self.port = port
    self.isIPv6 = isIPv6
  }
  /// `host`, `host:port`, `[v6]:port` — as it goes in a URL or `Host` header.
  public var description: String {
    let h = isIPv6 ? "[\(host)]" : host
    if let port { return "\(h):\(port)" }
    return h
  }
}

/// A request the parser refuses. `status` is the HTTP status to answer with, `reason` one line for
/// the caller. After any parse error the connection is closed: framing can no longer be trusted.
public struct HTTPParseError: Error, Sendable, Equatable {
  public var status: Int
  public var reason: String
  public init(status: Int, reason: String) {
    self.status = status
    self.reason = reason
  }
}

public struct HTTPLimits: Sendable {
  public var maxRequestLine: Int = 8 * 1024
  public var maxHeaderBytes: Int = 64 * 1024
  public var maxHeaderCount: Int = 128
  public init() {}
}
