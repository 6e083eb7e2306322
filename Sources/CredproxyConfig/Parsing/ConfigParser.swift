import Foundation

/// Reads `proxy.conf` into a validated `ProxyConfig`. Collects every error it can and throws them
/// together as a `ConfigError`; each is `file:line:col: what is wrong; expected what`.
public struct ConfigParser: Sendable {
  /// OAuth2 and OIDC routes are refused ("not available yet in this build") unless true.
  public var googleAuthAvailable: Bool

  public init(googleAuthAvailable: Bool = false) {
    self.googleAuthAvailable = googleAuthAvailable
  }

  /// Parses config text. `path` is used in messages and to resolve relative paths.
  /// - Throws: `ConfigError`.
  public func parse(text: String, path: String) throws -> ProxyConfig {
    var session = ParseSession(file: path, googleAuth: googleAuthAvailable)
    return try session.run(text)
  }

  /// Parses config text. `path` is used in messages and to resolve relative paths.
  /// - Throws: `ConfigError`.
  public static func parse(
    text: String, path: String = "proxy.conf", googleAuthAvailable: Bool = false
  ) throws -> ProxyConfig {
    try ConfigParser(googleAuthAvailable: googleAuthAvailable).parse(text: text, path: path)
  }
}

/// Reads and parses the config file at `path`.
/// - Throws: `ConfigError` (an unreadable file is one diagnostic at line 0 naming the path).
public func loadConfig(path: String, googleAuthAvailable: Bool) throws -> ProxyConfig {
  func fail(_ why: String) -> ConfigError {
    ConfigError([
      ConfigDiagnostic(
        file: path, line: 0, column: 0,
        message: "cannot read config file \"\(path)\": \(why); expected a readable proxy.conf")
    ])
  }
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
    throw fail("no such file")
  }
  if isDir.boolValue { throw fail("it is a directory") }
  guard let data = FileManager.default.contents(atPath: path) else {
    throw fail("permission denied or I/O error")
  }
  guard let text = String(data: data, encoding: .utf8) else { throw fail("it is not UTF-8 text") }
  return try ConfigParser(googleAuthAvailable: googleAuthAvailable).parse(text: text, path: path)
}

// MARK: - The parse

private enum BlockKind: String {
  case top = "top level"
  case route
  case credentials
  case client
}

private let topDirectives = [
  "listen", "ca-file", "connect-timeout", "request-timeout", "idle-timeout", "header-timeout",
  "body-timeout", "body-min-rate",
  "max-body", "access-log", "log-format", "route", "credentials", "client", "audit-log",
  "log-queries", "mode", "admin", "shutdown-timeout",
]
private let routeDirectives = [
  "upstream", "connect-to", "methods", "auth", "deny", "connect-timeout", "request-timeout",
  "max-body", "credentials", "auth-header", "allow", "rate", "max-concurrent", "tunnel",
  "allow-private", "mode",
]
private let credentialDirectives = ["source", "iam-endpoint", "refresh-window"]
private let clientDirectives = ["password", "token", "from", "max-concurrent"]
/// Directives that open a block.
private let blockDirectives: Set<String> = ["route", "credentials", "client"]
private let authTypesExpected = "expected one of none, bearer, header, basic, OAuth2, OIDC"
private let sourceTypesExpected =
  "expected one of adc, key-file, metadata, impersonate, refresh-token, client-credentials"

/// What the post-checks need to know about a route beyond the model: where things were written.
private struct RouteInfo {
  var head: Token
  var authToken: Token?
  /// The route's auth line was rejected (unknown, unavailable, bad arguments).
  var authFailed = false
  var credentialsToken: Token?
  var authHeaderToken: Token?
  var allowTokens: [Token] = []
  var tunnelToken: Token?
}

private struct ClientInfo {
  var nameToken: Token
  var tokenToken: Token?
}

private struct CredentialInfo {
  var nameToken: Token
  var viaToken: Token?
  var via: String?
}

private struct ParseSession {
  let file: String
  let baseDir: String
  let googleAuth: Bool
  var errors: [ConfigDiagnostic] = []
  var warnings: [ConfigDiagnostic] = []
  var config: ProxyConfig
  var topSeen: [String: Int] = [:]
  var listenSeen: [ListenAddress: Int] = [:]
  /// Each `listen` with its address word, for the cross-checks.
  var listenTokens: [Token] = []
  var adminToken: Token?
  var clientInfos: [String: ClientInfo] = [:]
  var routeInfos: [RouteInfo] = []
  var credentialInfos: [String: CredentialInfo] = [:]

  init(file: String, googleAuth: Bool) {
    self.file = file
    self.googleAuth = googleAuth
    let dir = (file as NSString).deletingLastPathComponent
    self.baseDir = dir
    self.config = ProxyConfig(sourcePath: file)
  }

  mutating func error(_ t: Token, _ message: String) {
    errors.append(ConfigDiagnostic(file: file, line: t.line, column: t.column, message: message))
  }

  mutating func warn(_ t: Token, _ message: String) {
    warnings.append(ConfigDiagnostic(file: file, line: t.line, column: t.column, message: message))
  }

  mutating func run(_ text: String) throws -> ProxyConfig {
    let statements = structure(Lexer.lex(text, file: file, errors: &errors))
    var i = 0
    while i < statements.count {
      let s = statements[i]
      i += 1
      let head = s.head
      if head.isClose {
        error(head, "unexpected }: no block is open; expected a directive")
        continue
      }
      let opens = s.tokens.count > 1 && s.tokens.last!.isOpen
      switch head.keyword {
      case "route", "credentials", "client":
        if !opens {
          let usage = head.keyword == "route" ? "route PATTERN… {" : "\(head.keyword) NAME {"
          error(
            s.tokens.last!,
            "\(head.keyword) opens a block; expected \(usage) with { at the end of the line")
          continue
        }
        let body = collectBody(statements, &i, opener: s, kind: head.keyword)
        switch head.keyword {
        case "route": parseRoute(s, body)
        case "credentials": parseCredentials(s, body)
        default: parseClient(s, body)
        }
      default:
        if opens {
          error(
            s.tokens.last!,
            "\(head.text) does not open a block; expected { only after route, credentials or client"
          )
          _ = collectBody(statements, &i, opener: s, kind: head.keyword)
          continue
        }
        parseTop(s)
      }
    }
    finish()
    if !errors.isEmpty {
      errors.sort { ($0.line, $0.column) < ($1.line, $1.column) }
      throw ConfigError(errors)
    }
    warnings.sort { ($0.line, $0.column) < ($1.line, $1.column) }
    config.warnings = warnings
    return config
  }

  /// Drops misplaced braces (with errors) and joins a `{` written on its own line to the line
  /// before, so that one slip does not cascade into errors for a whole block.
  mutating func structure(_ input: [Statement]) -> [Statement] {
    var out: [Statement] = []
    for var s in input {
      if s.head.isClose {
        if s.tokens.count > 1 {
          error(
            s.tokens[1], "unexpected \"\(s.tokens[1].text)\" after }; expected } alone on its line")
          s.tokens = [s.head]
        }
        out.append(s)
        continue
      }
      if s.tokens.count == 1 && s.head.isOpen {
        if var previous = out.last, !previous.head.isClose, !previous.tokens.last!.isOpen {
          error(
            s.head,
            "{ must end the line that opens the block; expected \(previous.head.text) … { on one line"
          )
          previous.tokens.append(s.head)
          out[out.count - 1] = previous
        } else {
          error(
            s.head, "unexpected {; expected route PATTERN… {, credentials NAME { or client NAME {")
        }
        continue
      }
      var kept: [Token] = []
      for (n, t) in s.tokens.enumerated() {
        if t.isOpen && n != s.tokens.count - 1 {
          error(t, "unexpected {; expected { only at the end of a line that opens a block")
        } else if t.isClose {
          error(t, "} must be on a line of its own; expected } alone to close a block")
        } else {
          kept.append(t)
        }
      }
      if !kept.isEmpty && !(kept.count == 1 && kept[0].isOpen) {
        s.tokens = kept
        out.append(s)
      }
    }
    return out
  }

  /// The statements of a block, up to its `}`. A `route`/`credentials` line inside a block means
  /// the `}` was forgotten: report it and end the block there.
  mutating func collectBody(_ all: [Statement], _ i: inout Int, opener: Statement, kind: String)
    -> [Statement]
  {
    var body: [Statement] = []
    let brace = opener.tokens.last!
    while i < all.count {
      let s = all[i]
      if s.head.isClose {
        i += 1
        return body
      }
      if s.tokens.count > 1 && s.tokens.last!.isOpen {
        let k = s.head.keyword
        if blockDirectives.contains(k) {
          error(
            s.head,
            "\(kind) block opened on line \(opener.line) is not closed; expected } before this \(k) block"
          )
          return body
        }
        error(
          s.tokens.last!, "unexpected block inside a \(kind) block; expected blocks not to nest")
        i += 1
        var depth = 1
        while i < all.count && depth > 0 {
          if all[i].head.isClose { depth -= 1 }
          if all[i].tokens.count > 1 && all[i].tokens.last!.isOpen { depth += 1 }
          i += 1
        }
        continue
      }
      body.append(s)
      i += 1
    }
    error(brace, "\(kind) block is not closed at end of file; expected } on a line of its own")
    return body
  }

  // MARK: Helpers

  /// Checks the number of arguments after the first `skip` words.
  mutating func arity(_ s: Statement, _ n: Int, _ usage: String, skip: Int = 1) -> Bool {
    let got = s.tokens.count - skip
    let what = s.tokens[0..<skip].map(\.text).joined(separator: " ")
    if got < n {
      let missing = n == 1 ? "its argument" : (got == 0 ? "its arguments" : "an argument")
      error(s.tokens[skip - 1], "\(what) is missing \(missing); expected \(usage)")
      return false
    }
    if got > n {
      error(s.tokens[skip + n], "too many arguments to \(what); expected \(usage)")
      return false
    }
    return true
  }

  mutating func once(_ s: Statement, _ seen: inout [String: Int], _ context: String) -> Bool {
    let k = s.head.keyword
    if let first = seen[k] {
      error(s.head, "duplicate \(k) (first set on line \(first)); expected at most one \(context)")
      return false
    }
    seen[k] = s.line
    return true
  }

  mutating func onceTop(_ s: Statement) -> Bool {
    var seen = topSeen
    defer { topSeen = seen }
    return once(s, &seen, "at top level")
  }

  mutating func unknown(_ s: Statement, in kind: BlockKind) {
    let k = s.head.keyword
    let all: [(BlockKind, [String])] = [
      (.top, topDirectives), (.route, routeDirectives), (.credentials, credentialDirectives),
      (.client, clientDirectives),
    ]
    let valid = all.first { $0.0 == kind }!.1
    let list = valid.joined(separator: ", ")
    let place = kind == .top ? "at top level" : "in a \(kind.rawValue) block"
    // Where else the directive would be valid.
    var blocks: [String] = []
    var atTop = false
    for (other, names) in all where other != kind && names.contains(k) {
      if other == .top { atTop = true } else { blocks.append("a \(other.rawValue) block") }
    }
    var places: [String] = []
    if atTop { places.append("at top level") }
    if !blocks.isEmpty { places.append("inside " + blocks.joined(separator: " or ")) }
    if places.isEmpty {
      error(s.head, "unknown directive \"\(s.head.text)\"; expected one of \(list) \(place)")
    } else {
      error(
        s.head,
        "\(k) is only valid \(places.joined(separator: " or ")); expected one of \(list) \(place)")
    }
  }

  mutating func path(_ t: Token) -> String? {
    let p = t.text
    if p.hasPrefix("~") {
      error(
        t,
        "\"~\" is not expanded in \"\(p)\"; expected an absolute path or one relative to the config file"
      )
      return nil
    }
    if p.hasPrefix("/") || baseDir.isEmpty || baseDir == "." { return p }
    return baseDir + "/" + p
  }

  mutating func duration(_ t: Token) -> Int? {
    do { return try Values.duration(t.text) } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func size(_ t: Token) -> UInt64? {
    do { return try Values.size(t.text) } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func secret(_ t: Token) -> SecretRef? {
    do {
      let ref = try Values.secret(t.text)
      switch ref {
      case .file(let p):
        guard let resolved = path(Token(text: p, quoted: t.quoted, line: t.line, column: t.column))
        else { return nil }
        return .file(resolved)
      case .literal:
        warn(t, "inline secret in the config file; prefer env:NAME or file:PATH")
        return ref
      case .env:
        return ref
      }
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  /// A token endpoint or API base URL: https, or http to a loopback host.
  mutating func secureURL(_ t: Token, what: String) -> String? {
    do {
      let u = try URLParts.parse(t.text)
      if !u.isSafeForCredentials {
        error(
          t,
          "\(what) must use https unless its host is loopback (127.0.0.0/8, ::1, localhost); expected https://…"
        )
        return nil
      }
      return t.text
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  /// A `listen` or `admin` address: an IP literal or `localhost`, with a port (0 allowed).
  mutating func bindAddress(_ t: Token, what: String) -> ListenAddress? {
    do {
      let hp = try Values.hostPort(t.text, portRequired: true, allowPortZero: true)
      if !hp.isIPv6 && hp.host != "localhost" && IPText.ipv4Canonical(hp.host.utf8) == nil {
        error(
          t,
          "\(what) address \"\(t.text)\" is not an IP address; expected e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080"
        )
        return nil
      }
      return ListenAddress(host: hp.host, port: hp.port!)
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func onOff(_ t: Token, _ what: String) -> Bool? {
    if t.isKeyword("on") { return true }
    if t.isKeyword("off") { return false }
    error(t, "invalid \(what) \"\(t.text)\"; expected on or off")
    return nil
  }

  mutating func mode(_ t: Token) -> PolicyMode? {
    if let m = PolicyMode(rawValue: t.keyword), !t.quoted { return m }
    error(t, "invalid mode \"\(t.text)\"; expected report or enforce")
    return nil
  }

  /// A positive whole number up to `max` (`max-concurrent`, rates, bursts).
  mutating func count(_ t: Token, _ what: String, example: String, max: Int = 1_000_000) -> Int? {
    let text = t.text
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text.count <= 9,
      let n = Int(text)
    else {
      error(t, "invalid \(what) \"\(text)\"; expected a whole number, at least 1 (e.g. \(example))")
      return nil
    }
    guard n >= 1 else {
      error(t, "\(what) \(text) is zero; expected at least 1 (e.g. \(example))")
      return nil
    }
    guard n <= max else {
      error(t, "\(what) \(text) is too large; expected at most \(max)")
      return nil
    }
    return n
  }

  /// `rate N/s [burst M]` or `rate N/m [burst M]`.
  mutating func rate(_ s: Statement) -> RateLimit? {
    let usage = "rate N/s or N/m [burst M] (e.g. rate 10/s burst 20)"
    guard s.tokens.count == 2 || s.tokens.count == 4 else {
      if s.tokens.count < 2 {
        error(s.head, "rate is missing its argument; expected \(usage)")
      } else if s.tokens.count == 3 {
        if s.tokens[2].isKeyword("burst") {
          error(s.tokens[2], "burst is missing its value; expected \(usage)")
        } else {
          error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
        }
      } else if !s.tokens[2].isKeyword("burst") {
        error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
      } else {
        error(s.tokens[4], "too many arguments to rate; expected \(usage)")
      }
      return nil
    }
    let t = s.tokens[1]
    let parts = t.text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let unit = RateLimit.Unit(rawValue: parts[1].lowercased()) else {
      error(t, "invalid rate \"\(t.text)\"; expected N/s or N/m (e.g. 10/s, 600/m)")
      return nil
    }
    guard
      let n = count(
        Token(text: String(parts[0]), quoted: false, line: t.line, column: t.column), "rate",
        example: "10/s")
    else { return nil }
    var burst: Int?
    if s.tokens.count == 4 {
      guard s.tokens[2].isKeyword("burst") else {
        error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
        return nil
      }
      guard let b = count(s.tokens[3], "burst", example: "20") else { return nil }
      burst = b
    }
    return RateLimit(count: n, unit: unit, burst: burst)
  }

  static func validName(_ s: String) -> Bool {
    !s.isEmpty
      && s.utf8.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
          || b == 0x2D || b == 0x5F || b == 0x2E
      }
  }

  // MARK: Top level

  mutating func parseTop(_ s: Statement) {
    let k = s.head.keyword
    switch k {
    case "listen":
      let usage = "listen ADDR:PORT [tls CERT-FILE KEY-FILE] (e.g. 127.0.0.1:8080 or [::1]:8080)"
      if s.tokens.count > 2 {
        guard s.tokens[2].isKeyword("tls") else {
          error(
            s.tokens[2], "unexpected \"\(s.tokens[2].text)\" after the address; expected \(usage)")
          return
        }
        guard arity(s, 2, "listen ADDR:PORT tls CERT-FILE KEY-FILE", skip: 3) else { return }
      } else {
        guard arity(s, 1, usage) else { return }
      }
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
    case "admin":
      guard onceTop(s) else { return }
      let usage = "admin ADDR:PORT [token SECRET] (e.g. admin 127.0.0.1:9090)"
      if s.tokens.count > 2 {
        guard s.tokens[2].isKeyword("token") else {
          error(
            s.tokens[2], "unexpected \"\(s.tokens[2].text)\" after the address; expected \(usage)")
          return
        }
        guard arity(s, 1, "admin ADDR:PORT token SECRET", skip: 3) else { return }
      } else {
        guard arity(s, 1, usage) else { return }
      }
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
    case "audit-log":
      guard onceTop(s), arity(s, 1, "audit-log stderr|off|PATH") else { return }
      let t = s.tokens[1]
      if t.isKeyword("stderr") {
        config.auditLog = .stderr
      } else if t.isKeyword("off") {
        config.auditLog = .off
      } else if let p = path(t) {
        config.auditLog = .file(p)
      }
    case "log-queries":
      guard onceTop(s), arity(s, 1, "log-queries on|off") else { return }
      if let on = onOff(s.tokens[1], "log-queries") { config.logQueries = on }
    case "mode":
      guard onceTop(s), arity(s, 1, "mode report|enforce") else { return }
      if let m = mode(s.tokens[1]) { config.mode = m }
    case "shutdown-timeout":
      guard onceTop(s), arity(s, 1, "shutdown-timeout DURATION (e.g. 30s)"),
        let ms = duration(s.tokens[1])
      else { return }
      config.shutdownTimeoutMs = ms
    case "ca-file":
      guard onceTop(s), arity(s, 1, "ca-file PATH") else { return }
      if let p = path(s.tokens[1]) {
        config.caFile = p
        config.caFileLine = s.line
      }
    case "body-min-rate":
      guard onceTop(s), arity(s, 1, "body-min-rate SIZE (bytes per second, e.g. 500; 0 for none)"),
        let n = size(s.tokens[1])
      else { return }
      config.bodyMinRate = n
    case "connect-timeout", "request-timeout", "idle-timeout", "header-timeout", "body-timeout":
      guard onceTop(s), arity(s, 1, "\(k) DURATION (e.g. 30s)"),
        let ms = duration(s.tokens[1])
      else { return }
      switch k {
      case "connect-timeout": config.connectTimeoutMs = ms
      case "request-timeout": config.requestTimeoutMs = ms
      case "idle-timeout": config.idleTimeoutMs = ms
      case "body-timeout": config.bodyTimeoutMs = ms
      default: config.headerTimeoutMs = ms
      }
    case "max-body":
      guard onceTop(s), arity(s, 1, "max-body SIZE (e.g. 10m)"),
        let n = size(s.tokens[1])
      else { return }
      config.maxBody = n
    case "access-log":
      guard onceTop(s), arity(s, 1, "access-log stderr|off|PATH") else {
        return
      }
      let t = s.tokens[1]
      if t.isKeyword("stderr") {
        config.accessLog = .stderr
      } else if t.isKeyword("off") {
        config.accessLog = .off
      } else if let p = path(t) {
        config.accessLog = .file(p)
      }
    case "log-format":
      guard onceTop(s), arity(s, 1, "log-format text|json") else { return }
      let t = s.tokens[1]
      if t.keyword == "text" {
        config.logFormat = .text
      } else if t.keyword == "json" {
        config.logFormat = .json
      } else {
        error(t, "invalid log-format \"\(t.text)\"; expected text or json")
      }
    default:
      unknown(s, in: .top)
    }
  }

  // MARK: Routes

  mutating func parseRoute(_ open: Statement, _ body: [Statement]) {
    let patternTokens = open.tokens.dropFirst().dropLast()
    var patterns: [RoutePattern] = []
    if patternTokens.isEmpty {
      error(open.head, "route needs at least one pattern; expected route PATTERN… {")
    }
    for t in patternTokens {
      do { patterns.append(try Values.pattern(t.text)) } catch { self.error(t, error.message) }
    }
    var route = Route(
      name: patternTokens.map(\.text).joined(separator: " "), patterns: patterns, line: open.line)
    var info = RouteInfo(head: open.head)
    var seen: [String: Int] = [:]
    for s in body {
      let k = s.head.keyword
      guard routeDirectives.contains(k) else {
        unknown(s, in: .route)
        continue
      }
      guard once(s, &seen, "per route") else { continue }
      switch k {
      case "upstream":
        guard arity(s, 1, "upstream https|http") else { continue }
        let t = s.tokens[1]
        if t.keyword == "https" {
          route.upstream = .https
        } else if t.keyword == "http" {
          route.upstream = .http
        } else {
          error(t, "invalid upstream \"\(t.text)\"; expected https or http")
        }
      case "connect-to":
        guard arity(s, 1, "connect-to HOST:PORT") else { continue }
        let t = s.tokens[1]
        do {
          let hp = try Values.hostPort(t.text, portRequired: true)
          route.connectTo = ListenAddress(host: hp.host, port: hp.port!)
        } catch {
          self.error(t, error.message)
        }
      case "methods":
        guard s.tokens.count > 1 else {
          error(
            s.head, "methods is missing its arguments; expected methods METHOD… (e.g. GET POST)")
          continue
        }
        var set = Set<String>()
        for t in s.args {
          let m = t.text.uppercased()
          if Values.isToken(m) {
            set.insert(m)
          } else {
            error(t, "invalid method \"\(t.text)\"; expected a method name such as GET or POST")
          }
        }
        route.methods = set
      case "auth":
        info.authToken = s.tokens.count > 1 ? s.tokens[1] : s.head
        if let auth = parseAuth(s) {
          route.auth = auth
        } else {
          info.authFailed = true
        }
      case "deny":
        guard arity(s, 0, "deny") else { continue }
        route.deny = true
      case "connect-timeout", "request-timeout":
        guard arity(s, 1, "\(k) DURATION (e.g. 30s)"), let ms = duration(s.tokens[1]) else {
          continue
        }
        if k == "connect-timeout" {
          route.connectTimeoutMs = ms
        } else {
          route.requestTimeoutMs = ms
        }
      case "max-body":
        guard arity(s, 1, "max-body SIZE (e.g. 10m)"), let n = size(s.tokens[1]) else { continue }
        route.maxBody = n
      case "credentials":
        guard arity(s, 1, "credentials NAME") else { continue }
        let t = s.tokens[1]
        guard Self.validName(t.text) else {
          error(t, "invalid credentials name \"\(t.text)\"; expected letters, digits, -, _ and .")
          continue
        }
        route.credentials = t.text
        info.credentialsToken = t
      case "auth-header":
        guard arity(s, 1, "auth-header NAME (e.g. X-Serverless-Authorization)") else { continue }
        let t = s.tokens[1]
        do {
          route.authHeader = try Values.headerName(t.text)
          info.authHeaderToken = t
        } catch {
          self.error(t, error.message)
        }
      case "allow":
        guard s.tokens.count > 1 else {
          error(
            s.head, "allow is missing its clients; expected allow CLIENT… (names of client blocks)")
          continue
        }
        var names: [String] = []
        for t in s.args {
          guard Self.validName(t.text) else {
            error(t, "invalid client name \"\(t.text)\"; expected letters, digits, -, _ and .")
            continue
          }
          if !names.contains(t.text) {
            names.append(t.text)
            info.allowTokens.append(t)
          }
        }
        route.allow = names
      case "rate":
        route.rate = rate(s)
      case "max-concurrent":
        guard arity(s, 1, "max-concurrent N (e.g. 8)") else { continue }
        route.maxConcurrent = count(s.tokens[1], "max-concurrent", example: "8")
      case "tunnel":
        guard arity(s, 0, "tunnel") else { continue }
        route.tunnel = true
        info.tunnelToken = s.head
      case "allow-private":
        guard arity(s, 0, "allow-private") else { continue }
        route.allowPrivate = true
      case "mode":
        guard arity(s, 1, "mode report|enforce") else { continue }
        route.mode = mode(s.tokens[1])
      default:
        break
      }
    }
    if !info.authFailed && !route.auth.usesGoogleCredentials {
      let current = info.authToken == nil ? "no auth" : "auth \(route.auth.typeName)"
      if let t = info.authHeaderToken {
        error(
          t,
          "auth-header only applies to auth OAuth2 or OIDC, and this route has \(current); expected auth OAuth2 or auth OIDC in this route"
        )
      }
      if let t = info.credentialsToken {
        error(
          t,
          "credentials only applies to auth OAuth2 or OIDC, and this route has \(current); expected auth OAuth2 or auth OIDC in this route"
        )
      }
    }
    config.routes.append(route)
    routeInfos.append(info)
  }

  /// `auth none | bearer SECRET | header NAME SECRET | basic USER SECRET | OAuth2 [scopes S…]
  /// | OIDC [audience A|url|origin]`. nil when the line is rejected.
  mutating func parseAuth(_ s: Statement) -> AuthSpec? {
    guard s.tokens.count >= 2 else {
      error(s.head, "auth is missing its type; \(authTypesExpected)")
      return nil
    }
    let type = s.tokens[1]
    let rest = Array(s.tokens.dropFirst(2))
    switch type.keyword {
    case "none":
      guard arity(s, 0, "auth none", skip: 2) else { return nil }
      return AuthSpec.none
    case "bearer":
      guard arity(s, 1, "auth bearer SECRET (env:NAME, file:PATH or a value)", skip: 2),
        let ref = secret(rest[0])
      else { return nil }
      return .bearer(ref)
    case "header":
      guard arity(s, 2, "auth header NAME SECRET (e.g. auth header X-Api-Key env:API_KEY)", skip: 2)
      else { return nil }
      var name: String?
      do { name = try Values.headerName(rest[0].text) } catch { self.error(rest[0], error.message) }
      let ref = secret(rest[1])
      guard let name, let ref else { return nil }
      return .header(name: name, value: ref)
    case "basic":
      guard arity(s, 2, "auth basic USER SECRET", skip: 2) else { return nil }
      let user = rest[0].text
      var ok = true
      if user.contains(":") || user.unicodeScalars.contains(where: { $0.value < 0x20 }) {
        error(
          rest[0], "basic auth user \"\(user)\" contains a colon; expected a user name without :")
        ok = false
      }
      let ref = secret(rest[1])
      guard ok, let ref else { return nil }
      return .basic(user: user, password: ref)
    case "oauth2", "oidc":
      let name = type.keyword == "oauth2" ? "OAuth2" : "OIDC"
      guard googleAuth else {
        error(
          type,
          "auth type \(name) is not available yet in this build; expected one of none, bearer, header, basic"
        )
        return nil
      }
      if name == "OAuth2" {
        guard let first = rest.first else { return .oauth2(scopes: AuthSpec.defaultScopes) }
        guard first.isKeyword("scopes") || first.isKeyword("scope") else {
          error(
            first,
            "unexpected \"\(first.text)\" after auth OAuth2; expected auth OAuth2 [scopes SCOPE…]")
          return nil
        }
        let scopes = AuthSpec.normalizeScopes(rest.dropFirst().map(\.text))
        guard !scopes.isEmpty else {
          error(
            first,
            "\(first.text) is missing its values; expected scopes SCOPE… (space- or comma-separated)"
          )
          return nil
        }
        return .oauth2(scopes: scopes)
      }
      guard let first = rest.first else { return .oidc(audience: .origin) }
      let usage = "auth OIDC [audience AUDIENCE|url|origin]"
      guard first.isKeyword("audience") else {
        error(first, "unexpected \"\(first.text)\" after auth OIDC; expected \(usage)")
        return nil
      }
      guard arity(s, 1, usage, skip: 3) else { return nil }
      let a = rest[1]
      if a.isKeyword("origin") { return .oidc(audience: .origin) }
      if a.isKeyword("url") {
        warn(
          a,
          "audience url mints one ID token per path (Cloud Run expects the origin); prefer audience origin"
        )
        return .oidc(audience: .url)
      }
      guard !a.text.isEmpty else {
        error(a, "empty audience; expected \(usage)")
        return nil
      }
      return .oidc(audience: .fixed(a.text))
    default:
      error(type, "unknown auth type \"\(type.text)\"; \(authTypesExpected)")
      return nil
    }
  }

  // MARK: Clients

  mutating func parseClient(_ open: Statement, _ body: [Statement]) {
    let args = Array(open.tokens.dropFirst().dropLast())
    guard let nameToken = args.first else {
      error(open.head, "client is missing its name; expected client NAME {")
      return
    }
    if args.count > 1 {
      error(args[1], "too many arguments to client; expected client NAME {")
    }
    let name = nameToken.text
    guard Self.validName(name) else {
      error(nameToken, "invalid client name \"\(name)\"; expected letters, digits, -, _ and .")
      return
    }
    if let first = clientInfos[name] {
      error(
        nameToken,
        "duplicate client block \"\(name)\" (first on line \(first.nameToken.line)); expected each name once"
      )
      return
    }
    var info = ClientInfo(nameToken: nameToken)
    var spec = ClientSpec(name: name, line: open.line)
    var seen: [String: Int] = [:]
    // A line that failed to parse still counts as a way to identify: no second error for it.
    var identifiedBy = false
    for s in body {
      let k = s.head.keyword
      guard clientDirectives.contains(k) else {
        unknown(s, in: .client)
        continue
      }
      if k != "from" {
        guard once(s, &seen, "per client") else { continue }
      }
      switch k {
      case "password", "token":
        identifiedBy = true
        guard arity(s, 1, "\(k) SECRET (env:NAME, file:PATH or a value)") else { continue }
        let ref = secret(s.tokens[1])
        if k == "password" {
          spec.password = ref
        } else {
          spec.token = ref
          info.tokenToken = s.tokens[1]
        }
      case "from":
        identifiedBy = true
        guard s.tokens.count > 1 else {
          error(
            s.head,
            "from is missing its addresses; expected from CIDR… (e.g. from 10.0.0.0/8 127.0.0.1 ::1/128)"
          )
          continue
        }
        for t in s.args {
          do {
            let block = try CIDR.parse(t.text)
            if !spec.from.contains(block) { spec.from.append(block) }
          } catch {
            self.error(t, error.message)
          }
        }
      case "max-concurrent":
        guard arity(s, 1, "max-concurrent N (e.g. 8)") else { continue }
        spec.maxConcurrent = count(s.tokens[1], "max-concurrent", example: "8")
      default:
        break
      }
    }
    clientInfos[name] = info
    if !identifiedBy {
      error(
        nameToken,
        "client \"\(name)\" has no way to be identified; expected password SECRET, token SECRET or from CIDR… in its block"
      )
    }
    config.clients.append(spec)
  }

  // MARK: Credentials

  mutating func parseCredentials(_ open: Statement, _ body: [Statement]) {
    let args = Array(open.tokens.dropFirst().dropLast())
    guard let nameToken = args.first else {
      error(open.head, "credentials is missing its name; expected credentials NAME {")
      return
    }
    if args.count > 1 {
      error(args[1], "too many arguments to credentials; expected credentials NAME {")
    }
    let name = nameToken.text
    guard Self.validName(name) else {
      error(nameToken, "invalid credentials name \"\(name)\"; expected letters, digits, -, _ and .")
      return
    }
    if let first = credentialInfos[name] {
      error(
        nameToken,
        "duplicate credentials block \"\(name)\" (first on line \(first.nameToken.line)); expected each name once"
      )
      return
    }
    var info = CredentialInfo(nameToken: nameToken)
    var source: CredentialSource?
    var sourceFailed = false
    var iam: String?
    var window: Int? = nil
    var seen: [String: Int] = [:]
    for s in body {
      let k = s.head.keyword
      guard credentialDirectives.contains(k) else {
        unknown(s, in: .credentials)
        continue
      }
      guard once(s, &seen, "per credentials block") else { continue }
      switch k {
      case "source":
        if let src = parseSource(s, &info) {
          source = src
        } else {
          sourceFailed = true
        }
      case "iam-endpoint":
        guard arity(s, 1, "iam-endpoint URL") else { continue }
        iam = secureURL(s.tokens[1], what: "iam-endpoint")
      case "refresh-window":
        guard arity(s, 1, "refresh-window DURATION (e.g. 5m)"), let ms = duration(s.tokens[1])
        else { continue }
        if ms >= 3_600_000 {
          error(
            s.tokens[1],
            "refresh-window \(s.tokens[1].text) is not shorter than a token's 1h lifetime; expected e.g. 5m"
          )
        } else {
          window = ms
        }
      default:
        break
      }
    }
    credentialInfos[name] = info
    guard let source else {
      if !sourceFailed {
        error(
          nameToken,
          "credentials \"\(name)\" has no source; expected source adc, key-file PATH, metadata, impersonate EMAIL, refresh-token PATH or client-credentials …"
        )
      }
      return
    }
    config.credentials.append(
      CredentialSpec(
        name: name, source: source, iamEndpoint: iam, refreshWindowMs: window, line: open.line))
  }

  mutating func parseSource(_ s: Statement, _ info: inout CredentialInfo) -> CredentialSource? {
    guard s.tokens.count >= 2 else {
      error(s.head, "source is missing its type; \(sourceTypesExpected)")
      return nil
    }
    let type = s.tokens[1]
    let rest = Array(s.tokens.dropFirst(2))
    switch type.keyword {
    case "adc":
      return arity(s, 0, "source adc", skip: 2) ? .adc : nil
    case "metadata":
      return arity(s, 0, "source metadata", skip: 2) ? .metadata : nil
    case "key-file":
      guard arity(s, 1, "source key-file PATH", skip: 2), let p = path(rest[0]) else { return nil }
      return .keyFile(path: p)
    case "refresh-token":
      guard arity(s, 1, "source refresh-token PATH", skip: 2), let p = path(rest[0]) else {
        return nil
      }
      return .refreshToken(path: p)
    case "impersonate":
      let usage = "source impersonate EMAIL [via NAME] [delegates EMAIL…]"
      guard let emailToken = rest.first else {
        error(type, "impersonate is missing its service account; expected \(usage)")
        return nil
      }
      var ok = true
      var email = ""
      do { email = try Values.email(emailToken.text) } catch {
        self.error(emailToken, error.message)
        ok = false
      }
      var via: String?
      var delegates: [String] = []
      var j = 1
      while j < rest.count {
        let t = rest[j]
        if t.isKeyword("via") && via == nil && delegates.isEmpty {
          guard j + 1 < rest.count else {
            error(t, "via is missing its credentials name; expected \(usage)")
            return nil
          }
          let v = rest[j + 1]
          if Self.validName(v.text) {
            via = v.text
            info.via = v.text
            info.viaToken = v
          } else {
            error(v, "invalid credentials name \"\(v.text)\"; expected letters, digits, -, _ and .")
            ok = false
          }
          j += 2
        } else if t.isKeyword("delegates") && delegates.isEmpty {
          guard j + 1 < rest.count else {
            error(t, "delegates is missing its service accounts; expected \(usage)")
            return nil
          }
          for d in rest[(j + 1)...] {
            do { delegates.append(try Values.email(d.text)) } catch {
              self.error(d, error.message)
              ok = false
            }
          }
          j = rest.count
        } else {
          error(t, "unexpected \"\(t.text)\" in source impersonate; expected \(usage)")
          return nil
        }
      }
      return ok ? .impersonate(email: email, via: via, delegates: delegates) : nil
    case "client-credentials":
      let usage =
        "source client-credentials token-url URL client-id ID client-secret SECRET [scopes SCOPE…]"
      var tokenURL: String?
      var clientID: String?
      var secretRef: SecretRef?
      var scopes: [String] = []
      var seenKeys: Set<String> = []
      var ok = true
      var j = 0
      while j < rest.count {
        let key = rest[j]
        let k = key.keyword
        guard ["token-url", "client-id", "client-secret", "scopes", "scope"].contains(k),
          !key.quoted
        else {
          error(key, "unexpected \"\(key.text)\" in source client-credentials; expected \(usage)")
          return nil
        }
        guard !seenKeys.contains(k) else {
          error(key, "duplicate \(k) in source client-credentials; expected it once")
          return nil
        }
        seenKeys.insert(k)
        guard j + 1 < rest.count else {
          error(key, "\(key.text) is missing its value; expected \(usage)")
          return nil
        }
        if k == "scopes" || k == "scope" {
          scopes = AuthSpec.normalizeScopes(rest[(j + 1)...].map(\.text))
          j = rest.count
          continue
        }
        let v = rest[j + 1]
        switch k {
        case "token-url":
          tokenURL = secureURL(v, what: "token-url")
          if tokenURL == nil { ok = false }
        case "client-id":
          clientID = v.text
        default:
          secretRef = secret(v)
          if secretRef == nil { ok = false }
        }
        j += 2
      }
      for (k, present) in [
        ("token-url", seenKeys.contains("token-url")), ("client-id", clientID != nil),
        ("client-secret", seenKeys.contains("client-secret")),
      ] where !present {
        error(type, "client-credentials is missing \(k); expected \(usage)")
        ok = false
      }
      guard ok, let tokenURL, let clientID, let secretRef else { return nil }
      return .clientCredentials(
        tokenURL: tokenURL, clientID: clientID, clientSecret: secretRef, scopes: scopes)
    default:
      error(type, "unknown credential source \"\(type.text)\"; \(sourceTypesExpected)")
      return nil
    }
  }

  // MARK: Cross-checks

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
        } else if case .oidc = route.auth, let spec = config.credential(named: route.credentials),
          !spec.source.canMintIDTokens
        {
          let why =
            if case .refreshToken = spec.source {
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
