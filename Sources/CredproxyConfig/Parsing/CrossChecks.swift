// The checks after parsing, which need the whole file: undefined credentials and clients,
// impersonation loops, OIDC with credentials that cannot mint ID tokens, plain-http credentials,
// tunnels with auth or paths, shadowed routes, unused credentials, open listeners, admin on a
// listen address, clients sharing a token.

extension ParseSession {
  /// `ca-cert` and `ca-key` come together; a CA for intercept routes that include `*` cannot be
  /// name-constrained, which `check` says per route.
  mutating func checkLocalCA() {
    if (config.caCert == nil) != (config.caKey == nil) {
      let (given, missing, line) =
        config.caCert != nil
        ? ("ca-cert", "ca-key", config.caCertLine) : ("ca-key", "ca-cert", config.caKeyLine)
      errors.append(
        ConfigDiagnostic(
          file: file, line: line, column: 1,
          message:
            "\(given) without \(missing): the local CA needs both its certificate and its key; expected ca-cert PATH and ca-key PATH (credproxy ca init writes both)"
        ))
    }
    let constraints = config.interceptNameConstraints
    for b in constraints.blockers {
      warnings.append(
        ConfigDiagnostic(
          file: file, line: b.line, column: 1,
          message:
            "route #\(b.route) intercepts \(b.pattern), which cannot be name-constrained: the local CA made by `credproxy ca init` for this config gets no name constraints, so its key could sign a certificate for any site; name the intercepted hosts (exact names or *.suffix) to constrain it"
        ))
    }
  }

  mutating func finish() {
    if config.listeners.isEmpty { config.listeners = [ProxyConfig.defaultListener] }
    checkListeners()
    checkClients()
    let defined = Set(credentialInfos.keys)
    var used = Set<String>()

    // Impersonation chains: `via` must name a block (or default) and must not loop.
    for (name, info) in credentialInfos.sorted(by: {
      $0.value.nameToken.line < $1.value.nameToken.line
    }) {
      guard let via = info.via, let viaToken = info.viaToken else { continue }
      used.insert(via)
      if via != CredentialSpec.defaultName && !defined.contains(via) {
        error(
          viaToken,
          "undefined credentials \"\(via)\"; expected a credentials \(via) { … } block, or default")
        continue
      }
      var seen: Set<String> = [name]
      var current: String? = via
      while let c = current {
        if seen.contains(c) {
          if c == name {
            error(
              viaToken,
              "credentials \"\(name)\" impersonates via itself (via \(via) loops back); expected a chain that ends in another source"
            )
          }
          break
        }
        seen.insert(c)
        current = credentialInfos[c]?.via
      }
    }

    checkLocalCA()
    for (index, route) in config.routes.enumerated() {
      let info = routeInfos[index]
      let number = index + 1
      if route.auth.usesGoogleCredentials {
        used.insert(route.credentials)
        if route.credentials != CredentialSpec.defaultName && !defined.contains(route.credentials) {
          error(
            info.credentialsToken ?? info.head,
            "undefined credentials \"\(route.credentials)\"; expected a credentials \(route.credentials) { … } block, or default"
          )
        } else if case .oauth2 = route.auth,
          case .githubApp = config.credential(named: route.credentials)?.source
        {
          error(
            info.credentialsToken ?? info.authToken ?? info.head,
            "auth OAuth2 uses credentials \"\(route.credentials)\" (source github-app), which mints GitHub installation tokens, not Google access tokens; expected auth token (Bearer) or auth basic x-access-token token (git over http)"
          )
        } else if let spec = config.credential(named: route.credentials),
          case .exec = spec.source, !route.auth.sendsTheCredentialsToken
        {
          error(
            info.authToken ?? info.head,
            "auth \(route.auth.typeName) uses credentials \"\(route.credentials)\" (source exec), which prints one token and takes no scopes or audience; expected auth token"
          )
        } else if case .oidc = route.auth, let spec = config.credential(named: route.credentials),
          !spec.source.canMintIDTokens
        {
          let why =
            if case .githubApp = spec.source {
              "a GitHub App mints installation tokens, not ID tokens"
            } else if case .refreshToken = spec.source {
              "refresh tokens cannot mint ID tokens for an arbitrary audience"
            } else {
              "a client-credentials grant does not mint Google ID tokens"
            }
          error(
            info.credentialsToken ?? info.authToken ?? info.head,
            "auth OIDC uses credentials \"\(route.credentials)\" (source \(spec.source.typeName)), and \(why); expected credentials with source adc, key-file, metadata or impersonate"
          )
        }
      }
      if case .oauth2 = route.auth, let t = info.authToken {
        for p in route.patterns where !p.host.isUnderGoogleAPIs {
          warn(
            t,
            "auth OAuth2 on route #\(number) sends Google access tokens to \(p), which is not under googleapis.com"
          )
        }
      }
      if route.upstream == .http && route.auth.typeName != "none" && !route.deny,
        let t = info.authToken,
        !route.patterns.allSatisfy({ p in
          if case .exact(let h) = p.host {
            return route.plainHTTPTokenRule(requestHost: h) == .loopback
              || IPText.isLoopback(route.dialledHost(requestHost: h))
          }
          return route.connectTo.map { IPText.isLoopback($0.host) } ?? false
        })
      {
        warn(
          t,
          route.auth.usesGoogleCredentials
            ? "route #\(number) sends Google tokens over plain http (upstream http): they are sent only on loopback connections, other requests get 403 insecure_upstream; prefer upstream https"
            : "route #\(number) sends credentials over plain http (upstream http); prefer upstream https"
        )
      }
      if route.deny && route.auth.typeName != "none", let t = info.authToken {
        warn(t, "route #\(number) denies every request, so its auth is never used")
      }
      for t in info.allowTokens where clientInfos[t.text] == nil {
        error(t, "undefined client \"\(t.text)\"; expected a client \(t.text) { … } block")
      }
      if let t = info.tunnelToken {
        if route.deny {
          warn(t, "route #\(number) denies every request, so its tunnel is never used")
        } else if !info.authFailed && route.auth != .none {
          error(
            t,
            "tunnel cannot be combined with auth \(route.auth.typeName): a CONNECT tunnel carries the caller's own end-to-end TLS, which the proxy cannot add a credential to; expected auth none on a tunnel route (give the tunnel a route of its own)"
          )
        }
        let withPath = route.patterns.filter { $0.pathPrefix != nil }
        if !route.patterns.isEmpty && withPath.count == route.patterns.count {
          error(
            t,
            "tunnel on route #\(number) never applies: CONNECT has no path and every pattern of the route has a path prefix; expected a pattern HOST[:PORT] without a path"
          )
        } else {
          for p in withPath {
            warn(
              t,
              "tunnel on route #\(number) does not apply to \(p): CONNECT has no path, so only patterns without a path prefix match a tunnel"
            )
          }
        }
      }
      if !route.patterns.isEmpty {
        var by: [Int] = []
        let shadowed = route.patterns.allSatisfy { b in
          for (j, earlier) in config.routes[..<index].enumerated() {
            if earlier.patterns.contains(where: { $0.covers(b) }) {
              if !by.contains(j + 1) { by.append(j + 1) }
              return true
            }
          }
          return false
        }
        if shadowed {
          let list = by.map { "#\($0)" }.joined(separator: ", ")
          warn(
            info.head,
            "route #\(number) \(route.name) never matches: route \(list) matches first (first match wins)"
          )
        }
      }
    }
    for (name, info) in credentialInfos where !used.contains(name) {
      warn(info.nameToken, "credentials \"\(name)\" is not used by any route")
    }
    if config.routes.isEmpty && errors.isEmpty {
      warnings.append(
        ConfigDiagnostic(
          file: file, line: 1, column: 1,
          message: "no routes: every request will be refused (credproxy is deny-by-default)"))
    }
  }

  /// A listener anyone can reach must not be an open proxy, and should not take passwords in
  /// clear.
  mutating func checkListeners() {
    for (addr, t) in zip(config.listeners, listenTokens) where !addr.isLoopback {
      if !config.requiresClientAuthentication {
        error(
          t,
          "listening on \(addr) without client authentication would make an open credential-injecting proxy; add a client block with password or token, or listen on 127.0.0.1"
        )
      } else if addr.tls == nil {
        warn(
          t,
          "listening on \(addr) without tls: passwords would cross the network in clear; add `tls CERT KEY` to the listen line"
        )
      }
    }
    if let admin = config.admin, let t = adminToken {
      if admin.address.port != 0,
        config.listeners.contains(where: { l in
          // A wildcard address (0.0.0.0, ::) takes the port on every address.
          let wildcard: Set<String> = ["0.0.0.0", "::"]
          return l.port == admin.address.port
            && (l.host == admin.address.host || wildcard.contains(l.host)
              || wildcard.contains(admin.address.host))
        })
      {
        error(
          t,
          "admin address \(admin.address) is also a listen address; expected a port of its own for admin"
        )
      } else if !admin.address.isLoopback {
        warn(
          t,
          "admin on \(admin.address) is plain http: its token would cross the network in clear; prefer a loopback address"
        )
      }
    }
  }

  /// Two clients must not share a token: the token is all that tells them apart.
  mutating func checkClients() {
    var tokens: [SecretRef: String] = [:]
    for c in config.clients {
      guard let token = c.token else { continue }
      if let other = tokens[token], let t = clientInfos[c.name]?.tokenToken {
        error(
          t,
          "client \"\(c.name)\" has the same token as client \"\(other)\" (\(token)); expected a token of its own for each client"
        )
      } else {
        tokens[token] = c.name
      }
    }
  }
}
