// The directive table: every directive of proxy.conf, once, with where it may be written, how it
// is written (its usage, for messages), how many arguments it takes and the handler that reads
// it. The "expected one of …" lists, "only valid in …" errors and the block-opening directives
// all come from this table (after tinyproxy's conf.c).

/// How many arguments a directive takes, checked before its handler runs.
enum Arity: Sendable {
  /// Exactly this many.
  case exactly(Int)
  /// At least one; `missing` names them in the error ("its clients").
  case oneOrMore(missing: String)
  /// The handler checks its own arguments (forms with keywords, such as `listen … tls …`).
  case checkedByHandler
}

struct Directive: Sendable {
  /// Reads one line of the directive into the block being read.
  typealias Handler = @Sendable (inout ParseSession, Statement, inout Block) -> Void

  /// A directive that opens a block at top level: how its first line is written and what reads
  /// the block.
  struct Opener: Sendable {
    let usage: String
    let read: @Sendable (inout ParseSession, Statement, [Statement]) -> Void
  }

  let name: String
  /// Where it may be written, in `BlockKind` order.
  let places: [BlockKind]
  /// How it is written, for messages.
  let usage: String
  let arity: Arity
  /// It may be written more than once in a block (else a second one is an error).
  let repeatable: Bool
  /// Reads the directive as a line (nil for one that only opens a block).
  let handler: Handler?
  /// Set when the directive, at top level, opens a block.
  let opens: Opener?

  init(
    _ name: String, in places: [BlockKind], _ usage: String, _ arity: Arity = .exactly(1),
    repeatable: Bool = false, opens: Opener? = nil, handler: Handler?
  ) {
    self.name = name
    self.places = places
    self.usage = usage
    self.arity = arity
    self.repeatable = repeatable
    self.opens = opens
    self.handler = handler
  }

  /// The handler for a line written in `kind`; nil where the directive is not allowed, and at
  /// top level for a directive that opens a block there.
  func handler(in kind: BlockKind) -> Handler? {
    guard places.contains(kind), !(kind == .top && opens != nil) else { return nil }
    return handler
  }

  /// "at top level or inside a route block": where else than `kind` it may be written; nil when
  /// nowhere.
  func placesText(otherThan kind: BlockKind) -> String? {
    let others = places.filter { $0 != kind }
    var parts: [String] = []
    if others.contains(.top) { parts.append("at top level") }
    let blocks = others.filter { $0 != .top }.map { "a \($0.rawValue) block" }
    if !blocks.isEmpty { parts.append("inside " + blocks.joined(separator: " or ")) }
    return parts.isEmpty ? nil : parts.joined(separator: " or ")
  }

  /// The table, by name.
  static let named: [String: Directive] = Dictionary(
    uniqueKeysWithValues: table.map { ($0.name, $0) })

  /// The directives allowed in `kind`, in table order (for "expected one of …").
  static func names(in kind: BlockKind) -> [String] {
    table.filter { $0.places.contains(kind) }.map(\.name)
  }

  static func usage(_ name: String) -> String { named[name]!.usage }

  /// "route, credentials or client".
  static var openingNames: String { oneOf(table.filter { $0.opens != nil }.map(\.name)) }

  /// "route PATTERN… {, credentials NAME { or client NAME {".
  static var openingForms: String { oneOf(table.compactMap { $0.opens?.usage }) }

  private static func oneOf(_ items: [String]) -> String {
    items.count < 2
      ? items.joined() : items.dropLast().joined(separator: ", ") + " or " + items.last!
  }

  // MARK: - The table

  /// Every directive, once. The order is the order of the "expected one of …" lists: each
  /// block's list is this table filtered to what the block allows.
  static let table: [Directive] = [
    Directive(
      "listen", in: [.top],
      "listen ADDR:PORT [tls CERT-FILE KEY-FILE] (e.g. 127.0.0.1:8080 or [::1]:8080)",
      .checkedByHandler, repeatable: true
    ) { p, s, _ in p.readListen(s) },
    Directive("ca-file", in: [.top], "ca-file PATH") { p, s, _ in p.readCAFile(s) },
    Directive("ca-cert", in: [.top], "ca-cert PATH (the local CA's certificate, for intercept)") {
      p, s, _ in p.readLocalCAPath(s, key: false)
    },
    Directive("ca-key", in: [.top], "ca-key PATH (the local CA's private key, for intercept)") {
      p, s, _ in p.readLocalCAPath(s, key: true)
    },
    Directive("upstream", in: [.route], "upstream https|http") { $0.readUpstream($1, &$2) },
    Directive("upstream-http", in: [.route], "upstream-http 1.1|2|auto") {
      $0.readUpstreamHTTP($1, &$2)
    },
    Directive("connect-to", in: [.route], "connect-to HOST:PORT") { $0.readConnectTo($1, &$2) },
    Directive(
      "methods", in: [.route], "methods METHOD… (e.g. GET POST)",
      .oneOrMore(missing: "its arguments")
    ) {
      $0.readMethods($1, &$2)
    },
    Directive(
      "auth", in: [.route],
      "auth none|bearer SECRET|header NAME SECRET|basic USER SECRET|OAuth2 [scopes SCOPE…]|OIDC [audience AUDIENCE|url|origin]|token|basic USER token",
      .checkedByHandler
    ) {
      $0.readAuth($1, &$2)
    },
    Directive("deny", in: [.route], "deny", .exactly(0)) { _, _, b in b.route?.route.deny = true },
    Directive("connect-timeout", in: [.top, .route], "connect-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.connectTimeoutMs, route: \.connectTimeoutMs)
    },
    Directive("request-timeout", in: [.top, .route], "request-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.requestTimeoutMs, route: \.requestTimeoutMs)
    },
    Directive("idle-timeout", in: [.top], "idle-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.idleTimeoutMs)
    },
    Directive("header-timeout", in: [.top], "header-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.headerTimeoutMs)
    },
    Directive("body-timeout", in: [.top], "body-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.bodyTimeoutMs)
    },
    Directive(
      "body-min-rate", in: [.top], "body-min-rate SIZE (bytes per second, e.g. 500; 0 for none)"
    ) {
      $0.readSize($1, &$2, top: \.bodyMinRate)
    },
    Directive("max-body", in: [.top, .route], "max-body SIZE (e.g. 10m)") {
      $0.readSize($1, &$2, top: \.maxBody, route: \.maxBody)
    },
    Directive("access-log", in: [.top], "access-log stderr|off|PATH") { p, s, _ in
      p.readLogTarget(s, \.accessLog)
    },
    Directive("log-format", in: [.top], "log-format text|json") { p, s, _ in p.readLogFormat(s) },
    Directive(
      "route", in: [.top], "route PATTERN… {",
      opens: Opener(usage: "route PATTERN… {") { $0.readRoute($1, $2) }, handler: nil),
    Directive(
      "credentials", in: [.top, .route], "credentials NAME",
      opens: Opener(usage: "credentials NAME {") { $0.readCredentials($1, $2) }
    ) { $0.readRouteCredentials($1, &$2) },
    Directive("auth-header", in: [.route], "auth-header NAME (e.g. X-Serverless-Authorization)") {
      $0.readAuthHeader($1, &$2)
    },
    Directive(
      "allow", in: [.route], "allow CLIENT… (names of client blocks)",
      .oneOrMore(missing: "its clients")
    ) {
      $0.readAllow($1, &$2)
    },
    Directive(
      "rate", in: [.route], "rate N/s or N/m [burst M] (e.g. rate 10/s burst 20)", .checkedByHandler
    ) {
      $0.readRate($1, &$2)
    },
    Directive(
      "client", in: [.top], "client NAME {",
      opens: Opener(usage: "client NAME {") { $0.readClient($1, $2) }, handler: nil),
    Directive(
      "source", in: [.credentials],
      "source adc|key-file PATH|metadata|impersonate EMAIL [via NAME] [delegates EMAIL…]|refresh-token PATH|client-credentials …|exec PROGRAM [ARGS…]|github-app …",
      .checkedByHandler
    ) {
      $0.readSource($1, &$2)
    },
    Directive("iam-endpoint", in: [.credentials], "iam-endpoint URL") {
      $0.readIAMEndpoint($1, &$2)
    },
    Directive("exec-timeout", in: [.credentials], "exec-timeout DURATION (e.g. 10s)") {
      $0.readExecTimeout($1, &$2)
    },
    Directive("refresh-window", in: [.credentials], "refresh-window DURATION (e.g. 5m)") {
      $0.readRefreshWindow($1, &$2)
    },
    Directive("password", in: [.client], "password SECRET (env:NAME, file:PATH or a value)") {
      $0.readClientSecret($1, &$2)
    },
    Directive("token", in: [.client], "token SECRET (env:NAME, file:PATH or a value)") {
      $0.readClientSecret($1, &$2)
    },
    Directive(
      "oidc", in: [.client],
      "oidc issuer URL audience AUDIENCE [claim KEY VALUE]… (the caller's own OIDC token, e.g. from GitHub Actions)",
      .checkedByHandler
    ) { $0.readOIDCClient($1, &$2) },
    Directive(
      "from", in: [.client], "from CIDR… (e.g. from 10.0.0.0/8 127.0.0.1 ::1/128)",
      .oneOrMore(missing: "its addresses"), repeatable: true
    ) { $0.readFrom($1, &$2) },
    Directive("max-concurrent", in: [.route, .client], "max-concurrent N (e.g. 8)") {
      $0.readMaxConcurrent($1, &$2)
    },
    Directive("tunnel", in: [.route], "tunnel", .exactly(0)) { p, s, b in
      if b.route?.route.intercept == true { p.tunnelAndIntercept(s.head) }
      b.route?.route.tunnel = true
      b.route?.info.tunnelToken = s.head
    },
    Directive("intercept", in: [.route], "intercept", .exactly(0)) { p, s, b in
      if b.route?.route.tunnel == true { p.tunnelAndIntercept(s.head) }
      b.route?.route.intercept = true
    },
    Directive("allow-private", in: [.route], "allow-private", .exactly(0)) { _, _, b in
      b.route?.route.allowPrivate = true
    },
    Directive("audit-log", in: [.top], "audit-log stderr|off|PATH") { p, s, _ in
      p.readLogTarget(s, \.auditLog)
    },
    Directive("log-queries", in: [.top], "log-queries on|off") { p, s, _ in
      if let on = p.onOff(s.tokens[1], "log-queries") { p.config.logQueries = on }
    },
    Directive("mode", in: [.top, .route], "mode report|enforce") { $0.readMode($1, &$2) },
    Directive(
      "admin", in: [.top], "admin ADDR:PORT [token SECRET] (e.g. admin 127.0.0.1:9090)",
      .checkedByHandler
    ) { p, s, _ in p.readAdmin(s) },
    Directive("shutdown-timeout", in: [.top], "shutdown-timeout DURATION (e.g. 30s)") {
      $0.readDuration($1, &$2, top: \.shutdownTimeoutMs)
    },
    Directive(
      "limits-store", in: [.top],
      "limits-store redis HOST:PORT [password SECRET] [prefix P] [on-outage open|closed] [timeout DURATION] [lease DURATION]",
      .checkedByHandler
    ) { p, s, _ in p.readLimitsStore(s) },
    Directive(
      "metadata-server", in: [.top],
      "metadata-server ADDR:PORT (a loopback address, e.g. metadata-server 127.0.0.1:8181)"
    ) { p, s, _ in p.readMetadataServer(s) },
  ]
}
