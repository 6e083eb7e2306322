import CredproxyConfig

/// The admin status page: one self-contained HTML document (inline CSS, a few lines of inline
/// script for the expiry countdown and the reload, no external assets). It takes plain rows only, no type that can hold a secret, and escapes every value.
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
    /// The last mint's outcome as shown: `ok`, `minting`, `failed (3 in a row)`.
    public var lastMint: String

    public init(
      credential: String, kind: String, scopesOrAudience: String, fingerprint: String?,
      expiresInSeconds: Int?, lastError: String?, lastMint: String = "-"
    ) {
      self.credential = credential
      self.kind = kind
      self.scopesOrAudience = scopesOrAudience
      self.fingerprint = fingerprint
      self.expiresInSeconds = expiresInSeconds
      self.lastError = lastError
      self.lastMint = lastMint
    }
  }

  /// What is happening now: traffic of the last 15 minutes, gauges, upstream errors, and the
  /// shared limits store when there is one.
  public struct Live: Sendable {
    public var traffic: LiveStats.Snapshot
    /// Since start, by kind (`upstream_connect`, `upstream_tls`, …).
    public var upstreamErrors: [String: UInt64]
    public var openConnections: Int
    public var openTunnels: Int
    /// The shared limits store: reachable, and e.g. `redis 10.0.0.5:6379 (2/2 connections)`;
    /// nil without `limits-store`.
    public var limitsStore: (up: Bool, detail: String)?
    /// The page reloads itself this often.
    public var refreshSeconds: Int

    public init(
      traffic: LiveStats.Snapshot, upstreamErrors: [String: UInt64], openConnections: Int,
      openTunnels: Int, limitsStore: (up: Bool, detail: String)? = nil, refreshSeconds: Int = 10
    ) {
      self.traffic = traffic
      self.upstreamErrors = upstreamErrors
      self.openConnections = openConnections
      self.openTunnels = openTunnels
      self.limitsStore = limitsStore
      self.refreshSeconds = refreshSeconds
    }
  }

  /// - Parameters:
  ///   - uptimeSeconds: since the proxy started.
  ///   - now: seconds since the epoch (shown, and used for nothing else).
  ///   - denials: newest first (`DenialLog.recent()`).
  public static func render(
    version: String, uptimeSeconds: Int, now: Double, routes: [RouteRow], tokens: [TokenRow],
    denials: [DenialLog.Entry], live: Live? = nil
  ) -> String {
    var h = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>credproxy status</title>

      """
    if let live {
      h += "<noscript><meta http-equiv=\"refresh\" content=\"\(live.refreshSeconds)\"></noscript>\n"
    }
    h += """
      <style>
      body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
      h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.5em 0 .4em}
      .wrap{overflow-x:auto}
      table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}
      th{background:#f4f4f4;white-space:nowrap}td.n{text-align:right;white-space:nowrap}code{font-family:ui-monospace,monospace;overflow-wrap:anywhere}
      .meta{color:#666}.err{color:#a00}.empty{color:#888;font-style:italic}
      .cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
      .card{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;min-width:8em}
      .card b{display:block;font-size:1.5em}.card span{color:#666;font-size:.85em}
      svg.spark{display:block;width:180px;height:28px}code.nm{white-space:nowrap}
      @media (max-width:640px){body{margin:.6em;font-size:13px}th,td{padding:.2em .35em}
      svg.spark{width:120px}.card{min-width:6em}}
      </style></head><body>

      """
    h += "<h1>credproxy \(esc(version))</h1>\n"
    h +=
      "<p class=\"meta\">up \(esc(duration(uptimeSeconds))) &middot; \(esc(Timestamp.iso8601(now)))</p>\n"
    if let live { h += liveSections(live) }

    h += "<h2 id=\"routes\">Routes</h2>\n"
    h += table(
      ["#", "patterns", "upstream", "auth", "credential", "clients", "tunnel", "mode"],
      routes.map { r in
        [
          "\(r.number)", "<code>\(esc(r.patterns))</code>", esc(r.upstream), esc(r.authType),
          esc(r.credential), esc(r.allow), r.tunnel ? "yes" : "-", esc(r.mode),
        ]
      }, empty: "no routes: every request is refused")

    h += "<h2 id=\"tokens\">Token cache</h2>\n"
    h += table(
      [
        "credential", "kind", "scopes / audience", "fingerprint", "expires in (s)", "last mint",
        "last error",
      ],
      tokens.map { t in
        [
          esc(t.credential), esc(t.kind), esc(t.scopesOrAudience),
          t.fingerprint.map { "<code>\(esc($0))</code>" } ?? "-",
          // The script counts `data-left` down from the moment the page loaded.
          t.expiresInSeconds.map { "<span data-left=\"\($0)\">\($0) s</span>" } ?? "-",
          esc(t.lastMint),
          t.lastError.map { "<span class=\"err\">\(esc($0))</span>" } ?? "-",
        ]
      }, empty: "no tokens")

    h += "<h2 id=\"denials\">Recent denials</h2>\n"
    h += table(
      ["time", "client", "host", "reason"],
      denials.map { d in
        [esc(Timestamp.iso8601(d.time)), esc(d.client ?? "-"), esc(d.host), esc(d.reason)]
      }, empty: "none")
    if let live { h += script(refreshSeconds: live.refreshSeconds) }
    h += "</body></html>\n"
    return h
  }

  /// Counts token expiries down every second and reloads the page; no external assets.
  private static func script(refreshSeconds: Int) -> String {
    """
    <script>
    (function(){var t0=performance.now();
    function tick(){var d=(performance.now()-t0)/1000,el=document.querySelectorAll('[data-left]');
    for(var i=0;i<el.length;i++){var s=Math.round(Number(el[i].getAttribute('data-left'))-d);
    el[i].textContent=s>0?s+' s':'expired';}}
    setInterval(tick,1000);setTimeout(function(){location.reload();},\(max(1, refreshSeconds))*1000);})();
    </script>

    """
  }

  private static func liveSections(_ live: Live) -> String {
    let perSecond = live.traffic.routes.reduce(0) { $0 + $1.lastMinute.perSecond }
    let errors = live.upstreamErrors.values.reduce(0, +)
    var h = "<div class=\"cards\" id=\"gauges\">"
    func card(_ id: String, _ value: String, _ label: String) {
      h += "<div class=\"card\" id=\"\(id)\"><b>\(value)</b><span>\(esc(label))</span></div>"
    }
    card("open-connections", "\(live.openConnections)", "open connections")
    card("open-tunnels", "\(live.openTunnels)", "open tunnels")
    card("rate", fixed(perSecond, 2), "requests/s (1 min)")
    card("upstream-error-total", "\(errors)", "upstream errors")
    if let store = live.limitsStore {
      card(
        "limits-store", store.up ? "up" : "<span class=\"err\">DOWN</span>",
        "limits store: \(store.detail)")
    }
    h += "</div>\n"

    h += "<h2 id=\"traffic-routes\">Traffic by route</h2>\n"
    h += trafficTable("route", live.traffic.routes)
    h += "<h2 id=\"traffic-clients\">Traffic by client</h2>\n"
    h += trafficTable("client", live.traffic.clients)
    h += "<h2 id=\"upstream-errors\">Upstream errors by kind (since start)</h2>\n"
    h += table(
      ["kind", "count"],
      live.upstreamErrors.sorted { $0.key < $1.key }.map { [esc($0.key), "\($0.value)"] },
      empty: "none", numeric: [1])
    return h
  }

  private static func trafficTable(_ what: String, _ rows: [LiveStats.Summary]) -> String {
    func ms(_ v: Double?) -> String {
      guard let v else { return "-" }
      return v.isFinite ? "\(fixed(v, v < 10 ? 1 : 0)) ms" : "slow"
    }
    func pct(_ w: LiveStats.Window) -> String { fixed(w.errorRate * 100, 1) + " %" }
    return table(
      [
        what, "req 1m", "req/s 1m", "errors 1m", "p50 / p99 1m", "req 15m", "req/s 15m",
        "errors 15m", "p50 / p99 15m", "last 15 min",
      ],
      rows.map { r in
        let m = r.lastMinute
        let q = r.last15Minutes
        return [
          "<code class=\"nm\">\(esc(r.name))</code>", "\(m.requests)", fixed(m.perSecond, 2),
          pct(m),
          "\(ms(m.p50Ms)) / \(ms(m.p99Ms))", "\(q.requests)", fixed(q.perSecond, 2), pct(q),
          "\(ms(q.p50Ms)) / \(ms(q.p99Ms))",
          sparkline(r.requestsPerSlot, r.errorsPerSlot, label: r.name),
        ]
      }, empty: "no requests in the last 15 minutes", numeric: Set(1...8))
  }

  /// Requests (and, in red, failures) per 10-second slot as an inline SVG.
  static func sparkline(_ requests: [Int], _ errors: [Int], label: String) -> String {
    let height = 28.0
    let top = Double(max(1, requests.max() ?? 0))
    func points(_ values: [Int]) -> String {
      values.enumerated().map { i, v in
        "\(i),\(fixed(height - 1 - Double(v) / top * (height - 2), 1))"
      }.joined(separator: " ")
    }
    let width = max(1, requests.count - 1)
    var svg =
      "<svg class=\"spark\" viewBox=\"0 0 \(width) \(Int(height))\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"requests per 10 s, last 15 minutes: \(esc(label))\">"
    svg +=
      "<polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\" points=\"\(points(requests))\"/>"
    if errors.contains(where: { $0 > 0 }) {
      svg +=
        "<polyline fill=\"none\" stroke=\"#c33\" stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\" points=\"\(points(errors))\"/>"
    }
    return svg + "</svg>"
  }

  /// `value` with `digits` decimals (no Foundation here).
  static func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int64((abs(value) * scale).rounded())
    let whole = n / Int64(scale)
    var text = (value < 0 && n != 0 ? "-" : "") + "\(whole)"
    if digits > 0 {
      let frac = String(n % Int64(scale))
      text += "." + String(repeating: "0", count: digits - frac.count) + frac
    }
    return text
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
  private static func table(
    _ headers: [String], _ rows: [[String]], empty: String, numeric: Set<Int> = []
  ) -> String {
    guard !rows.isEmpty else { return "<p class=\"empty\">\(esc(empty))</p>\n" }
    var t = "<div class=\"wrap\"><table><thead><tr>"
    for h in headers { t += "<th>\(esc(h))</th>" }
    t += "</tr></thead><tbody>\n"
    for row in rows {
      t += "<tr>"
      for (i, cell) in row.enumerated() {
        t += numeric.contains(i) ? "<td class=\"n\">\(cell)</td>" : "<td>\(cell)</td>"
      }
      t += "</tr>\n"
    }
    return t + "</tbody></table></div>\n"
  }

  static func duration(_ seconds: Int) -> String {
    let s = max(0, seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m \(s % 60)s" }
    if s < 86_400 { return "\(s / 3600)h \(s / 60 % 60)m" }
    return "\(s / 86_400)d \(s / 3600 % 24)h"
  }
}
