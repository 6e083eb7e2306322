/// The text `credproxy explain URL` prints: which route a request would take, where it would go,
/// and what credential would be added; or why it would be refused. Never prints a secret value.
///
/// With `client`, the answer is for that client (its route allow list checked); without, for
/// any caller. `method` `CONNECT` explains a tunnel to the URL's host and port.
public enum Explain {
  public static func render(
    config: ProxyConfig, url: String, method: String, environment: [String: String],
    client: String? = nil
  ) -> (text: String, allowed: Bool) {
    let method = method.uppercased()
    let parts: URLParts
    do {
      parts = try URLParts.parse(url)
    } catch {
      return (
        "cannot explain \(Router.quoted(url)): \(error.message)\n"
          + "explain takes the URL a client would request through the proxy, e.g. http://api.example.com/v1/items\n",
        false
      )
    }
    var lines: [String] = []
    lines.append("request: \(method) \(url)")
    let shownHost = parts.isIPv6 ? "[\(parts.host)]" : parts.host
    let portText = parts.port.map { "port \($0)" } ?? "no explicit port"
    lines.append("  host \(shownHost), \(portText), path \(parts.pathAndQuery)")

    // Who is asking: a defined client, or (no clients defined) an anonymous caller.
    var checkedClient: String?? = nil
    if let client {
      if config.clients.isEmpty {
        lines.append(
          "  client \(Format.word(client)): no clients are defined, so every caller is anonymous")
        checkedClient = .some(nil)
      } else if config.client(named: client) == nil {
        lines.append(
          "client \(Format.word(client)) is not defined (no client \(client) { … } block)")
        lines.append("refused: 407 proxy_auth_required")
        lines.append("  a caller that matches no client block is rejected")
        return (lines.joined(separator: "\n") + "\n", false)
      } else {
        checkedClient = .some(client)
      }
    }

    let router = Router(routes: config.routes)
    let tunnel = method == "CONNECT"
    let tunnelPort = parts.port ?? (parts.scheme == "https" ? 443 : 80)
    if tunnel {
      lines.append("  CONNECT tunnel to port \(tunnelPort) (only patterns without a path match)")
    }
    let decision: RoutingDecision
    switch (tunnel, checkedClient) {
    case (true, .some(let c)):
      decision = router.decideTunnel(host: parts.host, port: tunnelPort, client: c)
    case (true, .none):
      decision = router.decideTunnel(host: parts.host, port: tunnelPort)
    case (false, .some(let c)):
      decision = router.decide(
        method: method, host: parts.host, explicitPort: parts.port, path: parts.pathAndQuery,
        client: c)
    case (false, .none):
      decision = router.decide(
        method: method, host: parts.host, explicitPort: parts.port, path: parts.pathAndQuery)
    }
    func routeLine(_ m: RouteMatch) -> String {
      "route #\(m.number) \(m.route.name) (\(config.sourcePath):\(m.route.line))"
    }

    switch decision {
    case .refuse(let code, let reason, let match):
      let status = code.status
      lines.append(match.map(routeLine) ?? "no route matches")
      if code == .clientNotAllowed, let route = match?.route,
        config.effectiveMode(route) == .report
      {
        lines.append("allowed: mode report (enforce would refuse: \(status) \(code))")
        lines.append("  \(reason)")
        lines.append(contentsOf: policyLines(config, route))
        return (lines.joined(separator: "\n") + "\n", true)
      }
      lines.append("refused: \(status) \(code)")
      lines.append("  \(reason)")
      if code == .methodNotAllowed, let methods = match?.route.methods {
        lines.append("  Allow: \(methods.sorted().joined(separator: ", "))")
      }
      if let route = match?.route, code == .clientNotAllowed || code == .tunnelDenied {
        lines.append(contentsOf: policyLines(config, route))
      }
      return (lines.joined(separator: "\n") + "\n", false)

    case .forward(let match) where tunnel:
      lines.append(routeLine(match))
      let target = parts.isIPv6 ? "[\(parts.host)]:\(tunnelPort)" : "\(parts.host):\(tunnelPort)"
      if match.route.intercept {
        lines.append("allowed: intercept")
        lines.append(
          "  TLS: terminated by credproxy with a leaf for \(shownHost) from the local CA (\(Format.word(config.caFiles.cert)))"
        )
        lines.append(
          "  inner requests: each routed as a plain request would be, bound to \(target) (another authority gets 421 misdirected); explain https://\(target)/PATH for each"
        )
        lines.append("  auth: chosen by each inner request's route, never by the CONNECT")
      } else {
        lines.append("allowed: tunnel")
        lines.append("  dials: \(match.route.connectTo?.description ?? target)")
        lines.append("  auth: none (a tunnel carries the caller's own TLS; no credential is added)")
      }
      lines.append(contentsOf: policyLines(config, match.route))
      if let client { lines.append("  client \(Format.word(client)): allowed") }
      return (lines.joined(separator: "\n") + "\n", true)

    case .forward(let match):
      let route = match.route
      let port = route.effectivePort(explicitPort: parts.port)
      lines.append(routeLine(match))
      if case .refused(let dialled) = route.plainHTTPTokenRule(requestHost: parts.host) {
        lines.append("refused: \(ErrorCode.insecureUpstream.status) \(ErrorCode.insecureUpstream)")
        lines.append(
          "  a token would cross plain http to \(dialled), which is not a loopback address")
        return (lines.joined(separator: "\n") + "\n", false)
      }
      lines.append("allowed: forwarded")
      if let client, !config.clients.isEmpty {
        lines.append("  client \(Format.word(client)): allowed")
      }
      if parts.scheme == "https" {
        lines.append("  " + httpsProxyLine(router, parts, client: checkedClient))
      }
      let upstreamURL = route.upstreamURL(
        host: parts.host, explicitPort: parts.port, pathAndQuery: parts.pathAndQuery)
      let portNote =
        parts.port == nil
        ? " (port \(port): the upstream \(route.upstream.rawValue) default; the caller's \(parts.scheme):// does not change it)"
        : ""
      lines.append("  upstream: \(upstreamURL)\(portNote)")
      lines.append(
        "  upstream-http \(route.upstreamHTTP.rawValue): \(route.upstreamHTTP.summary(for: route.upstream))"
      )
      if let c = route.connectTo {
        lines.append("  connect-to: \(c) (TLS name and Host stay \(shownHost))")
      }
      let connect = route.connectTimeoutMs ?? config.connectTimeoutMs
      let request = route.requestTimeoutMs ?? config.requestTimeoutMs
      let body = route.maxBody ?? config.maxBody
      lines.append(
        "  limits: connect-timeout \(Format.duration(connect)), request-timeout \(Format.duration(request)), max-body \(Format.size(body))"
      )
      switch route.plainHTTPTokenRule(requestHost: parts.host) {
      case .refused:
        break  // answered above
      case .decidedWhenDialled(let name):
        lines.append(
          "  plain http: the token is sent only if \(name) is dialled at a loopback address, else 403 insecure_upstream"
        )
      case .loopback:
        lines.append("  plain http: the token crosses only a loopback connection")
      case .notApplicable:
        break
      }
      lines.append(contentsOf: policyLines(config, route))
      let header = route.injectedHeaderName ?? "Authorization"
      switch route.auth {
      case .none:
        lines.append("  auth: none (no credential is added)")
      case .bearer(let s):
        lines.append("  auth: \(header): Bearer <secret from \(s)>")
        lines.append("  " + availability(s, environment))
      case .header(_, let s):
        lines.append("  auth: \(header): <secret from \(s)>")
        lines.append("  " + availability(s, environment))
      case .basic(let user, let s):
        lines.append(
          "  auth: \(header): Basic <base64 of user \(Format.word(user)) and the secret from \(s)>")
        lines.append("  " + availability(s, environment))
      case .basicToken(let user):
        lines.append(
          "  auth: \(header): Basic <base64 of user \(Format.word(user)) and the token credentials \(route.credentials) mints>"
        )
        lines.append(contentsOf: credentialLines(config, route, environment))
      case .oauth2(let scopes):
        lines.append("  auth: \(header): Bearer <OAuth2 access token>")
        lines.append("  scopes: \(scopes.joined(separator: " "))")
        lines.append(contentsOf: credentialLines(config, route, environment))
      case .oidc(let audience):
        let aud = audience.resolve(
          upstream: route.upstream, host: parts.host, port: port, pathAndQuery: parts.pathAndQuery)
        lines.append("  auth: \(header): Bearer <OIDC ID token>")
        lines.append("  audience: \(aud) (audience \(audience.kindName))")
        lines.append(contentsOf: credentialLines(config, route, environment))
      case .token:
        lines.append("  auth: \(header): Bearer <token of credentials \(route.credentials)>")
        lines.append(contentsOf: credentialLines(config, route, environment))
      }
      return (lines.joined(separator: "\n") + "\n", true)
    }
  }

  /// How a client with `HTTPS_PROXY` reaches an `https://` URL: it sends CONNECT, and only an
  /// intercepted CONNECT lets credproxy add the credential to the request inside.
  private static func httpsProxyLine(_ router: Router, _ parts: URLParts, client: String??)
    -> String
  {
    let port = parts.port ?? 443
    let decision =
      switch client {
      case .some(let c): router.decideTunnel(host: parts.host, port: port, client: c)
      case .none: router.decideTunnel(host: parts.host, port: port)
      }
    let connect = "a client using https:// with HTTPS_PROXY sends CONNECT to port \(port):"
    switch decision {
    case .forward(let m) where m.route.intercept:
      return "\(connect) intercepted by route #\(m.number), so the request inside gets this answer"
    case .forward(let m):
      return
        "\(connect) relayed untouched by route #\(m.number) (tunnel), so the request inside gets NO credential; make that route intercept"
    case .refuse(let code, _, _):
      return
        "\(connect) refused (\(code.status) \(code)); only an absolute-form http:// request gets this answer, unless a route for the host intercepts"
    }
  }

  /// Who may use the route and how often.
  private static func policyLines(_ config: ProxyConfig, _ route: Route) -> [String] {
    var out: [String] = []
    if let allow = route.allow {
      out.append("  clients: \(allow.joined(separator: ", ")) (allow list)")
    } else if config.clients.isEmpty {
      out.append("  clients: anyone (no clients are defined)")
    } else {
      out.append("  clients: every client")
    }
    // With limits-store the limits hold for every replica together, not per process.
    let scope = config.limitsStore.map { " across all replicas (\($0.description))" } ?? ""
    out.append("  rate: \(route.rate.map { "\($0) per client\(scope)" } ?? "unlimited")")
    if let n = route.maxConcurrent { out.append("  max-concurrent: \(n) per client\(scope)") }
    out.append("  mode: \(config.effectiveMode(route).rawValue)")
    if route.allowPrivate { out.append("  allow-private: private addresses may be dialled") }
    if route.tunnel { out.append("  tunnel: CONNECT to this route's host and port is allowed") }
    if route.intercept {
      out.append("  intercept: CONNECT to this route's hosts is terminated with the local CA")
    }
    return out
  }

  private static func availability(_ s: SecretRef, _ env: [String: String]) -> String {
    if let problem = s.problem(environment: env) {
      return
        "secret: NOT available: \(problem); requests on this route get 503 credential_unavailable until it is"
    }
    return "secret: available (\(s))"
  }

  private static func credentialLines(
    _ config: ProxyConfig, _ route: Route, _ env: [String: String]
  ) -> [String] {
    guard let spec = config.credential(named: route.credentials) else {
      return ["  credentials: \(route.credentials) (undefined)"]
    }
    var out = [
      "  credentials: \(spec.name) (\(Format.source(spec.source))\(spec.line == 0 ? ", implicit" : ""))",
      "  token: minted and cached by the proxy, refreshed \(Format.duration(spec.refreshWindowMs)) before expiry",
    ]
    if case .clientCredentials(_, _, let secret, _) = spec.source {
      out.append("  client-" + availability(secret, env))
    }
    return out
  }
}

extension OIDCAudience {
  fileprivate var kindName: String {
    switch self {
    case .origin: return "origin"
    case .url: return "url"
    case .fixed: return "fixed"
    }
  }
}
