/// The text `credproxy explain URL` prints: which route a request would take, where it would go,
/// and what credential would be added; or why it would be refused. Never prints a secret value.
public enum Explain {
  public static func render(
    config: ProxyConfig, url: String, method: String, environment: [String: String]
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

    let router = Router(routes: config.routes)
    let decision = router.decide(
      method: method, host: parts.host, explicitPort: parts.port, path: parts.pathAndQuery)
    func routeLine(_ m: RouteMatch) -> String {
      "route #\(m.number) \(m.route.name) (\(config.sourcePath):\(m.route.line))"
    }

    switch decision {
    case .refuse(let status, let code, let reason, let match):
      lines.append(match.map(routeLine) ?? "no route matches")
      lines.append("refused: \(status) \(code)")
      lines.append("  \(reason)")
      if code == "method_not_allowed", let methods = match?.route.methods {
        lines.append("  Allow: \(methods.sorted().joined(separator: ", "))")
      }
      return (lines.joined(separator: "\n") + "\n", false)

    case .forward(let match):
      let route = match.route
      let port = route.effectivePort(explicitPort: parts.port)
      lines.append(routeLine(match))
      lines.append("allowed: forwarded")
      let upstreamURL = route.upstreamURL(
        host: parts.host, explicitPort: parts.port, pathAndQuery: parts.pathAndQuery)
      let portNote =
        parts.port == nil
        ? " (port \(port): the upstream \(route.upstream.rawValue) default; the caller's \(parts.scheme):// does not change it)"
        : ""
      lines.append("  upstream: \(upstreamURL)\(portNote)")
      if let c = route.connectTo {
        lines.append("  connect-to: \(c) (TLS name and Host stay \(shownHost))")
      }
      let connect = route.connectTimeoutMs ?? config.connectTimeoutMs
      let request = route.requestTimeoutMs ?? config.requestTimeoutMs
      let body = route.maxBody ?? config.maxBody
      lines.append(
        "  limits: connect-timeout \(Format.duration(connect)), request-timeout \(Format.duration(request)), max-body \(Format.size(body))"
      )
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
      }
      return (lines.joined(separator: "\n") + "\n", true)
    }
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
