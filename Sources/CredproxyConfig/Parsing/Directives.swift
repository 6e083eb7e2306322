// What each directive means: the handlers the directive table (DirectiveTable.swift) names, and
// the readers of the three blocks (route, client, credentials), which check the block's opening
// line, read its body through the table and add the result to the config. The sub-grammars of
// `auth` and `source` are in AuthAndSource.swift; argument values in Arguments.swift.

/// A route being read, with where its parts were written.
struct RouteDraft {
  var route: Route
  var info: RouteInfo
}

/// A client block being read.
struct ClientDraft {
  var spec: ClientSpec
  var info: ClientInfo
}

/// A credentials block being read.
struct CredentialsDraft {
  var info: CredentialInfo
  var source: CredentialSource?
  /// The source line was rejected (already reported): no second error for a missing source.
  var sourceFailed = false
  var iam: String?
  var window: Int?
  /// `exec-timeout D` (for `source exec`), with where it was written.
  var execTimeout: (ms: Int, token: Token)?
}

extension ParseSession {
  // MARK: Settings written at top level or in a route

  /// A duration: the default at top level, the route's own in a route.
  mutating func readDuration(
    _ s: Statement, _ b: inout Block, top: WritableKeyPath<ProxyConfig, Int>,
    route: WritableKeyPath<Route, Int?>? = nil
  ) {
    guard let ms = duration(s.tokens[1]) else { return }
    store(ms, b: &b, top: top, route: route)
  }

  /// A size: the default at top level, the route's own in a route.
  mutating func readSize(
    _ s: Statement, _ b: inout Block, top: WritableKeyPath<ProxyConfig, UInt64>,
    route: WritableKeyPath<Route, UInt64?>? = nil
  ) {
    guard let n = size(s.tokens[1]) else { return }
    store(n, b: &b, top: top, route: route)
  }

  /// Where a setting written at top level or in a route goes.
  private mutating func store<T>(
    _ value: T, b: inout Block, top: WritableKeyPath<ProxyConfig, T>,
    route: WritableKeyPath<Route, T?>?
  ) {
    if b.kind == .top {
      config[keyPath: top] = value
    } else if let route {
      b.route?.route[keyPath: route] = value
    }
  }

  mutating func readMode(_ s: Statement, _ b: inout Block) {
    let m = mode(s.tokens[1])
    if b.kind == .top {
      if let m { config.mode = m }
    } else {
      b.route?.route.mode = m
    }
  }

  mutating func readMaxConcurrent(_ s: Statement, _ b: inout Block) {
    let n = count(s.tokens[1], "max-concurrent", example: "8")
    if b.kind == .client {
      b.client?.spec.maxConcurrent = n
    } else {
      b.route?.route.maxConcurrent = n
    }
  }

  // MARK: Top level

  /// `NAME ADDR:PORT [KEYWORD ARG…]` (listen … tls, admin … token): checks the word after the
  /// address and the argument count of whichever form this is.
  mutating func addressForm(
    _ s: Statement, _ name: String, keyword: String, long: String, longArity: Int
  ) -> Bool {
    guard s.tokens.count > 2 else { return arity(s, 1, Directive.usage(name)) }
    guard s.tokens[2].isKeyword(keyword) else {
      error(
        s.tokens[2],
        "unexpected \"\(s.tokens[2].text)\" after the address; expected \(Directive.usage(name))")
      return false
    }
    return arity(s, longArity, long, skip: 3)
  }

  mutating func readListen(_ s: Statement) {
    guard
      addressForm(
        s, "listen", keyword: "tls", long: "listen ADDR:PORT tls CERT-FILE KEY-FILE", longArity: 2)
    else { return }
    let t = s.tokens[1]
    guard var addr = bindAddress(t, what: "listen") else { return }
    if addr.port != 0, let first = listenSeen[addr] {
      error(t, "duplicate listen \(addr) (first on line \(first)); expected each address once")
      return
    }
    if s.tokens.count == 5 {
      guard let cert = path(s.tokens[3]), let key = path(s.tokens[4]) else { return }
      addr.tls = ListenerTLS(certFile: cert, keyFile: key)
    }
    listenSeen[ListenAddress(host: addr.host, port: addr.port)] = s.line
    listenTokens.append(t)
    config.listeners.append(addr)
    config.listenLines.append(s.line)
  }

  mutating func readAdmin(_ s: Statement) {
    guard
      addressForm(s, "admin", keyword: "token", long: "admin ADDR:PORT token SECRET", longArity: 1)
    else { return }
    let t = s.tokens[1]
    guard let addr = bindAddress(t, what: "admin") else { return }
    var token: SecretRef?
    if s.tokens.count == 4 {
      guard let ref = secret(s.tokens[3]) else { return }
      token = ref
    }
    if token == nil && !addr.isLoopback {
      error(
        t,
        "admin on a non-loopback address needs a token; expected admin \(addr) token SECRET, or a loopback address such as 127.0.0.1:\(addr.port)"
      )
      return
    }
    adminToken = t
    config.admin = AdminConfig(address: addr, token: token, line: s.line)
  }

  /// `limits-store redis HOST:PORT` and its keyword options, each at most once.
  mutating func readLimitsStore(_ s: Statement) {
    let usage = Directive.usage("limits-store")
    guard s.tokens.count >= 3 else {
      error(s.tokens.last!, "limits-store needs a store and its address; expected \(usage)")
      return
    }
    guard s.tokens[1].isKeyword("redis") else {
      error(s.tokens[1], "unknown limits store \"\(s.tokens[1].text)\"; expected redis")
      return
    }
    let addr = s.tokens[2]
    let hp: (host: String, port: Int?, isIPv6: Bool)
    do { hp = try Values.hostPort(addr.text, portRequired: true) } catch {
      self.error(addr, error.message)
      return
    }
    var store = LimitsStore(host: hp.host, port: hp.port!, line: s.line)
    var seen: Set<String> = []
    var i = 3
    while i < s.tokens.count {
      let key = s.tokens[i]
      guard ["password", "prefix", "on-outage", "timeout", "lease"].contains(key.keyword),
        !key.quoted
      else {
        error(key, "unexpected \"\(key.text)\"; expected \(usage)")
        return
      }
      guard seen.insert(key.keyword).inserted else {
        error(key, "\(key.keyword) given twice; expected it once")
        return
      }
      guard i + 1 < s.tokens.count else {
        error(key, "\(key.keyword) needs a value; expected \(usage)")
        return
      }
      let value = s.tokens[i + 1]
      switch key.keyword {
      case "password":
        guard let ref = secret(value) else { return }
        store.password = ref
      case "prefix":
        guard !value.text.isEmpty, value.text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
          error(value, "invalid prefix \"\(value.text)\"; expected printable ASCII without spaces")
          return
        }
        store.prefix = value.text
      case "on-outage":
        if value.isKeyword("open") {
          store.failOpen = true
        } else if value.isKeyword("closed") {
          store.failOpen = false
        } else {
          error(
            value,
            "invalid on-outage \"\(value.text)\"; expected open (limit locally) or closed (refuse)")
          return
        }
      case "lease":
        guard let ms = duration(value) else { return }
        guard ms >= 1_000 && ms <= 3_600_000 else {
          error(value, "lease \(value.text) is out of range; expected 1s to 1h")
          return
        }
        store.leaseMs = ms
      default:
        guard let ms = duration(value) else { return }
        guard ms >= 1 && ms <= 10_000 else {
          error(value, "timeout \(value.text) is out of range; expected 1ms to 10s")
          return
        }
        store.timeoutMs = ms
      }
      i += 2
    }
    config.limitsStore = store
  }

  /// `metadata-server ADDR:PORT`: the placeholder metadata server. Loopback only: it names the
  /// project and service account, which other hosts have no business reading.
  mutating func readMetadataServer(_ s: Statement) {
    let t = s.tokens[1]
    guard let addr = bindAddress(t, what: "metadata-server") else { return }
    guard addr.isLoopback else {
      error(
        t,
        "metadata-server must listen on a loopback address; expected e.g. metadata-server 127.0.0.1:\(addr.port)"
      )
      return
    }
    config.metadataServer = addr
  }

  /// `access-log` or `audit-log`: stderr, off or a file.
  mutating func readLogTarget(
    _ s: Statement, _ target: WritableKeyPath<ProxyConfig, AccessLogTarget>
  ) {
    let t = s.tokens[1]
    if t.isKeyword("stderr") {
      config[keyPath: target] = .stderr
    } else if t.isKeyword("off") {
      config[keyPath: target] = .off
    } else if let p = path(t) {
      config[keyPath: target] = .file(p)
    }
  }

  mutating func readCAFile(_ s: Statement) {
    if let p = path(s.tokens[1]) {
      config.caFile = p
      config.caFileLine = s.line
    }
  }

  /// `ca-cert PATH` / `ca-key PATH`: the local CA that signs leaves for `intercept` routes.
  mutating func readLocalCAPath(_ s: Statement, key: Bool) {
    guard let p = path(s.tokens[1]) else { return }
    if key {
      config.caKey = p
      config.caKeyLine = s.line
    } else {
      config.caCert = p
      config.caCertLine = s.line
    }
  }

  /// A route with both `tunnel` and `intercept`.
  mutating func tunnelAndIntercept(_ t: Token) {
    error(
      t,
      "a route cannot have both tunnel and intercept: tunnel passes the caller's TLS through untouched, intercept terminates it with a leaf from the local CA; expected one of them (give each its own route)"
    )
  }

  mutating func readLogFormat(_ s: Statement) {
    let t = s.tokens[1]
    if t.keyword == "text" {
      config.logFormat = .text
    } else if t.keyword == "json" {
      config.logFormat = .json
    } else {
      error(t, "invalid log-format \"\(t.text)\"; expected text or json")
    }
  }

  // MARK: Routes

  mutating func readRoute(_ open: Statement, _ body: [Statement]) {
    let patternTokens = open.tokens.dropFirst().dropLast()
    var patterns: [RoutePattern] = []
    if patternTokens.isEmpty {
      error(open.head, "route needs at least one pattern; expected \(Directive.usage("route"))")
    }
    for t in patternTokens {
      do { patterns.append(try Values.pattern(t.text)) } catch { self.error(t, error.message) }
    }
    var block = Block(kind: .route)
    block.route = RouteDraft(
      route: Route(
        name: patternTokens.map(\.text).joined(separator: " "), patterns: patterns,
        line: open.line),
      info: RouteInfo(head: open.head))
    read(body, into: &block)
    let (route, info) = (block.route!.route, block.route!.info)
    if !info.authFailed && !route.auth.usesGoogleCredentials {
      let current = info.authToken == nil ? "no auth" : "auth \(route.auth.typeName)"
      for (directive, token) in [
        ("auth-header", info.authHeaderToken), ("credentials", info.credentialsToken),
      ] {
        guard let t = token else { continue }
        error(
          t,
          "\(directive) only applies to auth OAuth2, OIDC, token or basic USER token, and this route has \(current); expected auth OAuth2, auth OIDC or auth token in this route"
        )
      }
    }
    config.routes.append(route)
    routeInfos.append(info)
  }

  mutating func readUpstream(_ s: Statement, _ b: inout Block) {
    let t = s.tokens[1]
    if t.keyword == "https" {
      b.route?.route.upstream = .https
    } else if t.keyword == "http" {
      b.route?.route.upstream = .http
    } else {
      error(t, "invalid upstream \"\(t.text)\"; expected https or http")
    }
  }

  mutating func readUpstreamHTTP(_ s: Statement, _ b: inout Block) {
    let t = s.tokens[1]
    guard let version = UpstreamHTTPVersion(rawValue: t.text.lowercased()) else {
      return error(t, "invalid upstream-http \"\(t.text)\"; expected 1.1, 2 or auto")
    }
    b.route?.route.upstreamHTTP = version
  }

  mutating func readConnectTo(_ s: Statement, _ b: inout Block) {
    let t = s.tokens[1]
    do {
      let hp = try Values.hostPort(t.text, portRequired: true)
      b.route?.route.connectTo = ListenAddress(host: hp.host, port: hp.port!)
    } catch {
      self.error(t, error.message)
    }
  }

  mutating func readMethods(_ s: Statement, _ b: inout Block) {
    var set = Set<String>()
    for t in s.args {
      let m = t.text.uppercased()
      if Values.isToken(m) {
        set.insert(m)
      } else {
        error(t, "invalid method \"\(t.text)\"; expected a method name such as GET or POST")
      }
    }
    b.route?.route.methods = set
  }

  mutating func readAuth(_ s: Statement, _ b: inout Block) {
    b.route?.info.authToken = s.tokens.count > 1 ? s.tokens[1] : s.head
    if let auth = parseAuth(s) {
      b.route?.route.auth = auth
    } else {
      b.route?.info.authFailed = true
    }
  }

  /// `credentials NAME` in a route: the block its OAuth2 or OIDC tokens come from.
  mutating func readRouteCredentials(_ s: Statement, _ b: inout Block) {
    let t = s.tokens[1]
    guard validName(t, "credentials") else { return }
    b.route?.route.credentials = t.text
    b.route?.info.credentialsToken = t
  }

  mutating func readAuthHeader(_ s: Statement, _ b: inout Block) {
    let t = s.tokens[1]
    do {
      b.route?.route.authHeader = try Values.headerName(t.text)
      b.route?.info.authHeaderToken = t
    } catch {
      self.error(t, error.message)
    }
  }

  mutating func readAllow(_ s: Statement, _ b: inout Block) {
    var names: [String] = []
    for t in s.args {
      guard validName(t, "client") else { continue }
      if !names.contains(t.text) {
        names.append(t.text)
        b.route?.info.allowTokens.append(t)
      }
    }
    b.route?.route.allow = names
  }

  mutating func readRate(_ s: Statement, _ b: inout Block) {
    b.route?.route.rate = rate(s)
  }

  // MARK: Clients

  mutating func readClient(_ open: Statement, _ body: [Statement]) {
    guard let nameToken = blockName(open, "client") else { return }
    let name = nameToken.text
    var block = Block(kind: .client)
    block.client = ClientDraft(
      spec: ClientSpec(name: name, line: open.line), info: ClientInfo(nameToken: nameToken))
    read(body, into: &block)
    clientInfos[name] = block.client!.info
    // A line that failed to parse still counts as a way to identify: no second error for it.
    if block.written.isDisjoint(with: ["password", "token", "from", "oidc"]) {
      error(
        nameToken,
        "client \"\(name)\" has no way to be identified; expected password SECRET, token SECRET, from CIDR… or oidc issuer URL audience A in its block"
      )
    }
    config.clients.append(block.client!.spec)
  }

  /// `password` or `token`.
  mutating func readClientSecret(_ s: Statement, _ b: inout Block) {
    let ref = secret(s.tokens[1])
    if s.head.keyword == "password" {
      b.client?.spec.password = ref
    } else {
      b.client?.spec.token = ref
      b.client?.info.tokenToken = s.tokens[1]
    }
  }

  /// `oidc issuer URL audience A [claim KEY VALUE]…`, one line.
  mutating func readOIDCClient(_ s: Statement, _ b: inout Block) {
    let usage = Directive.usage("oidc")
    var issuer: String?
    var audience: String?
    var claims: [OIDCClientRule.Claim] = []
    var ok = true
    var j = 1
    while j < s.tokens.count {
      let key = s.tokens[j]
      let k = key.quoted ? "" : key.keyword
      let needs = k == "claim" ? 2 : 1
      guard ["issuer", "audience", "claim"].contains(k) else {
        error(key, "unexpected \"\(key.text)\" in oidc; expected \(usage)")
        return
      }
      guard j + needs < s.tokens.count else {
        error(key, "\(key.text) is missing its value; expected \(usage)")
        return
      }
      let v = s.tokens[j + 1]
      switch k {
      case "issuer", "audience":
        guard (k == "issuer" ? issuer : audience) == nil else {
          error(key, "duplicate \(k) in oidc; expected it once")
          return
        }
        if k == "audience" {
          audience = v.text
        } else if let url = secureBaseURL(
          v, what: "oidc issuer", example: "https://token.actions.githubusercontent.com")
        {
          issuer = url
        } else {
          ok = false
        }
      default:
        let value = s.tokens[j + 2]
        if v.text.isEmpty {
          error(
            v, "empty claim name; expected claim KEY VALUE (e.g. claim repository myorg/deploy)")
          ok = false
        } else if claims.contains(where: { $0.key == v.text }) {
          error(v, "duplicate claim \"\(v.text)\"; expected each claim once")
          ok = false
        }
        claims.append(.init(key: v.text, value: value.text))
      }
      j += needs + 1
    }
    for (k, missing) in [
      ("issuer", !s.args.contains { $0.isKeyword("issuer") }),
      ("audience", audience == nil),
    ] where missing {
      error(s.head, "oidc is missing \(k); expected \(usage)")
      ok = false
    }
    if audience?.isEmpty == true {
      error(s.head, "oidc has an empty audience; expected \(usage)")
      ok = false
    }
    guard ok, let issuer, let audience else { return }
    b.client?.spec.oidc = OIDCClientRule(issuer: issuer, audience: audience, claims: claims)
  }

  mutating func readFrom(_ s: Statement, _ b: inout Block) {
    for t in s.args {
      do {
        let cidr = try CIDR.parse(t.text)
        if b.client?.spec.from.contains(cidr) == false { b.client?.spec.from.append(cidr) }
      } catch {
        self.error(t, error.message)
      }
    }
  }

  // MARK: Credentials

  mutating func readCredentials(_ open: Statement, _ body: [Statement]) {
    guard let nameToken = blockName(open, "credentials") else { return }
    let name = nameToken.text
    var block = Block(kind: .credentials)
    block.credentials = CredentialsDraft(info: CredentialInfo(nameToken: nameToken))
    read(body, into: &block)
    let draft = block.credentials!
    credentialInfos[name] = draft.info
    guard var source = draft.source else {
      if !draft.sourceFailed {
        error(
          nameToken,
          "credentials \"\(name)\" has no source; expected source adc, key-file PATH, metadata, impersonate EMAIL, refresh-token PATH, client-credentials … or exec PROGRAM"
        )
      }
      return
    }
    if let timeout = draft.execTimeout {
      if case .exec(var command) = source {
        command.timeoutMs = timeout.ms
        source = .exec(command)
      } else {
        error(
          timeout.token,
          "exec-timeout applies to source exec only; credentials \"\(name)\" has source \(source.typeName)"
        )
      }
    }
    config.credentials.append(
      CredentialSpec(
        name: name, source: source, iamEndpoint: draft.iam, refreshWindowMs: draft.window,
        line: open.line))
  }

  mutating func readSource(_ s: Statement, _ b: inout Block) {
    guard var draft = b.credentials else { return }
    if let source = parseSource(s, &draft.info) {
      draft.source = source
    } else {
      draft.sourceFailed = true
    }
    b.credentials = draft
  }

  mutating func readIAMEndpoint(_ s: Statement, _ b: inout Block) {
    b.credentials?.iam = secureURL(s.tokens[1], what: "iam-endpoint")
  }

  mutating func readExecTimeout(_ s: Statement, _ b: inout Block) {
    guard let ms = duration(s.tokens[1]) else { return }
    guard ms > 0 && ms <= 600_000 else {
      error(s.tokens[1], "exec-timeout \(s.tokens[1].text) is out of range; expected 1ms to 10m")
      return
    }
    b.credentials?.execTimeout = (ms, s.tokens[1])
  }

  mutating func readRefreshWindow(_ s: Statement, _ b: inout Block) {
    guard let ms = duration(s.tokens[1]) else { return }
    if ms >= 3_600_000 {
      error(
        s.tokens[1],
        "refresh-window \(s.tokens[1].text) is not shorter than a token's 1h lifetime; expected e.g. 5m"
      )
    } else {
      b.credentials?.window = ms
    }
  }

  // MARK: Block names

  /// The name on a `client NAME {` or `credentials NAME {` line; nil (reported) when it is
  /// missing, invalid or already used by another block of the kind.
  mutating func blockName(_ open: Statement, _ kind: String) -> Token? {
    let args = Array(open.tokens.dropFirst().dropLast())
    let usage = Directive.named[kind]!.opens!.usage
    guard let nameToken = args.first else {
      error(open.head, "\(kind) is missing its name; expected \(usage)")
      return nil
    }
    if args.count > 1 {
      error(args[1], "too many arguments to \(kind); expected \(usage)")
    }
    guard validName(nameToken, kind) else { return nil }
    let first =
      kind == "client"
      ? clientInfos[nameToken.text]?.nameToken.line
      : credentialInfos[nameToken.text]?.nameToken.line
    if let first {
      error(
        nameToken,
        "duplicate \(kind) block \"\(nameToken.text)\" (first on line \(first)); expected each name once"
      )
      return nil
    }
    return nameToken
  }
}
