import CredproxyConfig

/// The admin status page: one self-contained HTML document (inline CSS, no scripts, no external
/// assets). It takes plain rows only, no type that can hold a secret, and escapes every value.
public enum StatusPage {
  /// One route, as shown. Build with `RouteRow(route:number:mode:)` or `rows(for:)`.
  public struct RouteRow: Sendable, Equatable {
    public var number: Int
    public var patterns: String
    public var upstream: String
    /// `none`, `bearer`, `header`, `basic`, `OAuth2`, `OIDC`, or `deny`.
    public var authType: String
    /// Where the credential comes from: a secret's source (`env:NAME`, `file:PATH`,
    /// `inline secret`) or a credentials block name; `-` for none.
    public var credential: String
    /// `alice, bob`, or `every client`.
    public var allow: String
    public var tunnel: Bool
    public var mode: String

    public init(
      number: Int, patterns: String, upstream: String, authType: String, credential: String,
      allow: String, tunnel: Bool, mode: String
    ) {
      self.number = number
      self.patterns = patterns
      self.upstream = upstream
      self.authType = authType
      self.credential = credential
      self.allow = allow
      self.tunnel = tunnel
      self.mode = mode
    }

    /// Copies what may be shown: secret sources are named (`SecretRef.description`), never
    /// resolved.
    public init(route: Route, number: Int, mode: PolicyMode) {
      let credential: String
      if let secret = route.auth.secret {
        credential = secret.description
      } else if route.auth.usesGoogleCredentials {
        credential = route.credentials
      } else {
        credential = "-"
      }
      self.init(
        number: number, patterns: route.patterns.map(\.description).joined(separator: " "),
        upstream: route.connectTo.map { "\(route.upstream.rawValue) via \($0)" }
          ?? route.upstream.rawValue,
        authType: route.deny ? "deny" : route.auth.typeName, credential: credential,
        allow: route.allow?.joined(separator: ", ") ?? "every client", tunnel: route.tunnel,
        mode: mode.rawValue)
    }
  }

  /// The rows of every route of `config`, numbered as `check` numbers them.
  public static func rows(for config: ProxyConfig) -> [RouteRow] {
    config.routes.enumerated().map {
      RouteRow(route: $0.element, number: $0.offset + 1, mode: config.effectiveMode($0.element))
    }
  }

  /// One cached token (or credential that failed to mint).
  public struct TokenRow: Sendable, Equatable {
    public var credential: String
    /// `access token`, `ID token`, …
    public var kind: String
    /// Scopes or audience.
    public var scopesOrAudience: String
    /// A short fingerprint; never the token.
    public var fingerprint: String?
    /// Seconds until expiry; nil when there is no token.
    public var expiresInSeconds: Int?
    public var lastError: String?

    public init(
      credential: String, kind: String, scopesOrAudience: String, fingerprint: String?,
      expiresInSeconds: Int?, lastError: String?
    ) {
      self.credential = credential
      self.kind = kind
      self.scopesOrAudience = scopesOrAudience
      self.fingerprint = fingerprint
      self.expiresInSeconds = expiresInSeconds
      self.lastError = lastError
    }
  }

  /// - Parameters:
  ///   - uptimeSeconds: since the proxy started.
  ///   - now: seconds since the epoch (shown, and used for nothing else).
  ///   - denials: newest first (`DenialLog.recent()`).
  public static func render(
    version: String, uptimeSeconds: Int, now: Double, routes: [RouteRow], tokens: [TokenRow],
    denials: [DenialLog.Entry]
  ) -> String {
    var h = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>credproxy status</title>
      <style>
      body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
      h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.5em 0 .4em}
      table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}
      th{background:#f4f4f4}td.n{text-align:right}code{font-family:ui-monospace,monospace}
      .meta{color:#666}.err{color:#a00}.empty{color:#888;font-style:italic}
      </style></head><body>

      """
    h += "<h1>credproxy \(esc(version))</h1>\n"
    h +=
      "<p class=\"meta\">up \(esc(duration(uptimeSeconds))) &middot; \(esc(Timestamp.iso8601(now)))</p>\n"

    h += "<h2>Routes</h2>\n"
    h += table(
      ["#", "patterns", "upstream", "auth", "credential", "clients", "tunnel", "mode"],
      routes.map { r in
        [
          "\(r.number)", "<code>\(esc(r.patterns))</code>", esc(r.upstream), esc(r.authType),
          esc(r.credential), esc(r.allow), r.tunnel ? "yes" : "-", esc(r.mode),
        ]
      }, empty: "no routes: every request is refused")

    h += "<h2>Token cache</h2>\n"
    h += table(
      ["credential", "kind", "scopes / audience", "fingerprint", "expires in (s)", "last error"],
      tokens.map { t in
        [
          esc(t.credential), esc(t.kind), esc(t.scopesOrAudience),
          t.fingerprint.map { "<code>\(esc($0))</code>" } ?? "-",
          t.expiresInSeconds.map { "\($0)" } ?? "-",
          t.lastError.map { "<span class=\"err\">\(esc($0))</span>" } ?? "-",
        ]
      }, empty: "no tokens")

    h += "<h2>Recent denials</h2>\n"
    h += table(
      ["time", "client", "host", "reason"],
      denials.map { d in
        [esc(Timestamp.iso8601(d.time)), esc(d.client ?? "-"), esc(d.host), esc(d.reason)]
      }, empty: "none")
    h += "</body></html>\n"
    return h
  }

  /// HTML text and attribute escaping: `& < > " '`.
  public static func esc(_ s: String) -> String {
    guard
      s.utf8.contains(where: { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x22 || $0 == 0x27 })
    else { return s }
    var out = ""
    for c in s.unicodeScalars {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.unicodeScalars.append(c)
      }
    }
    return out
  }

  /// Cells are already escaped HTML.
  private static func table(_ headers: [String], _ rows: [[String]], empty: String) -> String {
    guard !rows.isEmpty else { return "<p class=\"empty\">\(esc(empty))</p>\n" }
    var t = "<table><thead><tr>"
    for h in headers { t += "<th>\(esc(h))</th>" }
    t += "</tr></thead><tbody>\n"
    for row in rows {
      t += "<tr>"
      for cell in row { t += "<td>\(cell)</td>" }
      t += "</tr>\n"
    }
    return t + "</tbody></table>\n"
  }

  static func duration(_ seconds: Int) -> String {
    let s = max(0, seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m \(s % 60)s" }
    if s < 86_400 { return "\(s / 3600)h \(s / 60 % 60)m" }
    return "\(s / 86_400)d \(s / 3600 % 24)h"
  }
}
