import Wire

/// What the policy did with a request.
public enum AuditDecision: String, Sendable, Equatable {
  case allow
  case deny
  /// The policy would have refused it, and report mode let it through.
  case report
}

/// One audit-log entry: a request, who sent it, what the policy decided and how it ended.
public struct AuditRecord: Sendable, Equatable {
  /// Seconds since the Unix epoch.
  public var time: Double
  /// The client's name; nil for an anonymous or unidentified caller.
  public var client: String?
  /// The caller's address (`IP` or `IP:PORT`).
  public var source: String
  public var method: String
  /// `http`, `https`, or `connect` for a tunnel.
  public var scheme: String
  public var host: String
  public var port: Int?
  /// The path, without the query.
  public var path: String
  /// The query string without `?`; written only when `log-queries on`, and redacted.
  public var query: String?
  /// The route's number (1-based, as `check` prints it); nil when none matched.
  public var route: Int?
  public var decision: AuditDecision
  /// Why a request was denied (or would have been): an error code or one line.
  public var reason: String?
  /// The credential used: a credentials block name or a secret's source (`env:NAME`).
  public var credential: String?
  /// A short fingerprint of the injected token (never the token).
  public var tokenFingerprint: String?
  public var status: Int
  public var bytesIn: UInt64
  public var bytesOut: UInt64
  public var durationMs: Double
  /// `intercept` for a request read inside an intercepted CONNECT tunnel; nil otherwise (and
  /// then not written).
  public var via: String?
  /// The OAuth2 scope set of the minted token injected (space-separated, sorted), or the OIDC
  /// audience of the ID token; nil (and not written) for requests without a minted token.
  /// `credproxy report` reads them to list what each client had minted.
  public var tokenScopes: String?
  public var tokenAudience: String?
  /// For a client identified by its OIDC token: the configured claims it matched
  /// (`repository=myorg/deploy`); nil otherwise (and then not written). Never the token.
  public var clientClaims: [String]?

  public init(
    time: Double, client: String? = nil, source: String, method: String, scheme: String,
    host: String, port: Int? = nil, path: String, query: String? = nil, route: Int? = nil,
    decision: AuditDecision, reason: String? = nil, credential: String? = nil,
    tokenFingerprint: String? = nil, status: Int, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0,
    durationMs: Double = 0
  ) {
    self.time = time
    self.client = client
    self.source = source
    self.method = method
    self.scheme = scheme
    self.host = host
    self.port = port
    self.path = path
    self.query = query
    self.route = route
    self.decision = decision
    self.reason = reason
    self.credential = credential
    self.tokenFingerprint = tokenFingerprint
    self.status = status
    self.bytesIn = bytesIn
    self.bytesOut = bytesOut
    self.durationMs = durationMs
  }

  /// Splits a request target into path and query (no `?`; a fragment is dropped).
  public static func splitTarget(_ pathAndQuery: String) -> (path: String, query: String?) {
    var target = Substring(pathAndQuery)
    if let hash = target.firstIndex(of: "#") { target = target[..<hash] }
    guard let q = target.firstIndex(of: "?") else { return (String(target), nil) }
    return (String(target[..<q]), String(target[target.index(after: q)...]))
  }
}

/// Audit records as JSON lines. Fields in a fixed order: time, client, source, method, scheme,
/// host, port, path, [query], route, decision, reason, credential, token_fingerprint, [scopes],
/// [audience], status, bytes_in, bytes_out, duration_ms. Absent values are `null`; `query` is left
/// out unless `logQueries`, `scopes`/`audience` unless a minted token was injected.
public struct AuditFormatter: Sendable {
  public var logQueries: Bool

  public init(logQueries: Bool = false) { self.logQueries = logQueries }

  /// One JSON object, without a trailing newline.
  public func jsonLine(_ r: AuditRecord) -> String {
    var out = "{"
    out.reserveCapacity(320)
    func key(_ k: String) {
      if out.utf8.count > 1 { out += "," }
      out += "\""
      out += k
      out += "\":"
    }
    func string(_ k: String, _ v: String?) {
      key(k)
      if let v { JSONText.appendQuoted(v, to: &out) } else { out += "null" }
    }
    func int<I: BinaryInteger>(_ k: String, _ v: I?) {
      key(k)
      out += v.map { String($0) } ?? "null"
    }
    string("time", Timestamp.iso8601(r.time))
    string("client", r.client)
    if let claims = r.clientClaims {
      key("client_claims")
      out += "["
      for (i, c) in claims.enumerated() {
        if i > 0 { out += "," }
        JSONText.appendQuoted(c, to: &out)
      }
      out += "]"
    }
    string("source", r.source)
    string("method", r.method)
    string("scheme", r.scheme)
    if let via = r.via { string("via", via) }
    string("host", r.host)
    int("port", r.port)
    string("path", r.path)
    if logQueries {
      string("query", r.query.map(QueryRedactor.redact))
    }
    int("route", r.route)
    string("decision", r.decision.rawValue)
    string("reason", r.reason)
    string("credential", r.credential)
    string("token_fingerprint", r.tokenFingerprint)
    if let scopes = r.tokenScopes { string("scopes", scopes) }
    if let audience = r.tokenAudience { string("audience", audience) }
    int("status", r.status)
    int("bytes_in", r.bytesIn)
    int("bytes_out", r.bytesOut)
    key("duration_ms")
    out += JSON.number(r.durationMs)
    out += "}"
    return out
  }
}

/// Replaces the values of secret-looking query parameters with `REDACTED`.
///
/// A parameter is secret-looking when its name (percent-decoded, case-insensitive) is one of
/// token, key, secret, password, passwd, sig, signature, access_token, api_key, apikey,
/// client_secret, refresh_token, id_token, code, auth, credential(s), or ends in `_token`,
/// `_key`, `_secret`, `_password`, `_signature` (or the same with `-`), e.g. `X-Amz-Signature`,
/// `X-Amz-Security-Token`.
public enum QueryRedactor {
  static let names: Set<String> = [
    "token", "key", "secret", "password", "passwd", "sig", "signature", "access_token",
    "api_key", "apikey", "client_secret", "refresh_token", "id_token", "code", "auth",
    "credential", "credentials",
  ]
  static let suffixes = ["token", "key", "secret", "password", "signature"]

  public static func isSecretParameter<S: StringProtocol>(_ name: S) -> Bool {
    let n = percentDecoded(name).lowercased()
    if names.contains(n) { return true }
    for s in suffixes where n.hasSuffix("_" + s) || n.hasSuffix("-" + s) { return true }
    return false
  }

  /// `a=1&token=abc&b` → `a=1&token=REDACTED&b`. Separators `&` and `;` are kept.
  public static func redact(_ query: String) -> String {
    var out = ""
    out.reserveCapacity(query.utf8.count)
    var start = query.startIndex
    var i = query.startIndex
    func flush(_ end: String.Index) {
      let part = query[start..<end]
      if let eq = part.firstIndex(of: "="), isSecretParameter(part[..<eq]) {
        out += part[...eq]
        out += "REDACTED"
      } else {
        out += part
      }
    }
    while i < query.endIndex {
      let c = query[i]
      if c == "&" || c == ";" {
        flush(i)
        out.append(c)
        start = query.index(after: i)
      }
      i = query.index(after: i)
    }
    flush(query.endIndex)
    return out
  }

  static func percentDecoded<S: StringProtocol>(_ s: S) -> String {
    guard s.utf8.contains(0x25) || s.utf8.contains(0x2B) else { return String(s) }
    return String(decoding: PercentDecoding.decode(s.utf8, plusAsSpace: true), as: UTF8.self)
  }
}

public enum JSON {
  /// A finite number with at most three decimals (`41`, `41.5`, `0.125`); null otherwise.
  static func number(_ d: Double) -> String {
    guard d.isFinite else { return "null" }
    let thousandths = (d * 1000).rounded()
    guard abs(thousandths) < 9e15 else { return String(Int64(d.rounded())) }
    let t = Int64(thousandths)
    let sign = t < 0 ? "-" : ""
    let a = abs(t)
    var frac = String(a % 1000)
    if a % 1000 == 0 { return "\(sign)\(a / 1000)" }
    frac = String(repeating: "0", count: 3 - frac.count) + frac
    while frac.hasSuffix("0") { frac.removeLast() }
    return "\(sign)\(a / 1000).\(frac)"
  }
}

/// UTC timestamps (`2026-11-26T14:00:00.123Z`): `Wire.UTCTimestamp`, under the name the audit
/// log's users know.
public typealias Timestamp = UTCTimestamp
