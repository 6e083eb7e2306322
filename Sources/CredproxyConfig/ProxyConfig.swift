import Wire

/// The loaded configuration: what `proxy.conf` says, validated. Built by `ConfigParser`.
///
/// Relative paths in the file (`ca-file`, `access-log`, `file:` secrets, `key-file`,
/// `refresh-token`) are resolved against the config file's directory when the model is built.
public struct ProxyConfig: Sendable {
  public var sourcePath: String
  /// Never empty after parsing: `127.0.0.1:8080` when the file has no `listen`.
  public var listeners: [ListenAddress] = []
  /// Extra CA bundle for upstream TLS verification (`ca-file`); `SSL_CERT_FILE` is honoured too.
  public var caFile: String?
  /// Where `ca-file` was written (0 when absent), for warnings.
  var caFileLine: Int = 0
  /// `ca-cert PATH`: the local CA's certificate, which signs leaves for `intercept` routes
  /// (several replicas share one CA by pointing at the same files). Given with `ca-key`.
  public var caCert: String?
  /// `ca-key PATH`: the local CA's private key (PEM, unencrypted; keep it mode 0600).
  public var caKey: String?
  /// Where `ca-cert` / `ca-key` were written (0 when absent), for messages.
  var caCertLine: Int = 0
  var caKeyLine: Int = 0
  /// The line of each entry of `listeners` (0 for the default), for warnings.
  var listenLines: [Int] = []
  public var connectTimeoutMs: Int = 10_000
  public var requestTimeoutMs: Int = 300_000
  public var idleTimeoutMs: Int = 60_000
  /// Deadline to receive a whole request head once its first byte arrived (slowloris guard).
  public var headerTimeoutMs: Int = 10_000
  /// While credproxy waits for a request body, the caller must keep it coming: silence this long
  /// is a 408 (a body that trickles one byte at a time is a slowloris on the upload side).
  public var bodyTimeoutMs: Int = 20_000
  /// Bytes per second a body must average while credproxy waits for it: each byte buys
  /// 1/rate seconds of `body-timeout` (mod_reqtimeout's model). 0: only silence counts.
  public var bodyMinRate: UInt64 = 500
  public var maxBody: UInt64 = 1 << 40
  public var accessLog: AccessLogTarget = .stderr
  public var logFormat: LogFormat = .text
  /// In file order: the first route that matches a request wins.
  public var routes: [Route] = []
  /// `credentials NAME { … }` blocks, in file order. `default` without a block is implicit
  /// (`source adc`): use `credential(named:)` to look one up.
  public var credentials: [CredentialSpec] = []
  /// `client NAME { … }` blocks, in file order. Empty: nobody identifies, every caller is
  /// anonymous and every route's allow list is "every client".
  public var clients: [ClientSpec] = []
  /// `audit-log PATH|stderr|off`: one JSON line per decision (default off).
  public var auditLog: AccessLogTarget = .off
  /// `mode report|enforce` at top level: the default for routes without their own `mode`.
  public var mode: PolicyMode = .enforce
  /// `admin ADDR:PORT [token SECRET]`: the status page and metrics listener; nil when off.
  public var admin: AdminConfig?
  /// `metadata-server ADDR:PORT`: a GCE metadata-server stub handing out placeholder tokens
  /// (loopback only); nil when off.
  public var metadataServer: ListenAddress?
  /// `limits-store redis HOST:PORT …`: `rate` and `max-concurrent` held in Redis for every
  /// replica; nil: each process limits on its own.
  public var limitsStore: LimitsStore?
  /// `shutdown-timeout D`: how long in-flight requests may drain after SIGTERM.
  public var shutdownTimeoutMs: Int = 30_000
  /// `log-queries on|off`: whether the audit log records query strings (secret-looking
  /// parameters redacted).
  public var logQueries: Bool = false
  /// Things `check` prints but that do not stop the proxy (inline secrets, shadowed routes, …).
  /// Warnings that depend on the environment (an unset secret variable) come from
  /// `secretWarnings(environment:)` instead.
  public var warnings: [ConfigDiagnostic] = []

  public static let defaultListener = ListenAddress(host: "127.0.0.1", port: 8080)

  public init(sourcePath: String) { self.sourcePath = sourcePath }

  /// The credentials block called `name`; `default` without a block is `source adc` (line 0).
  public func credential(named name: String) -> CredentialSpec? {
    if let spec = credentials.first(where: { $0.name == name }) { return spec }
    if name == CredentialSpec.defaultName {
      return CredentialSpec(name: CredentialSpec.defaultName, source: .adc, line: 0)
    }
    return nil
  }

  /// The client block called `name`.
  public func client(named name: String) -> ClientSpec? { clients.first { $0.name == name } }

  /// The mode a route's policy runs in: its own `mode`, else the top-level one.
  public func effectiveMode(_ route: Route) -> PolicyMode { route.mode ?? mode }

  /// True when some client must prove who it is (a password or a token); `from`-only clients
  /// do not count: addresses are not secrets.
  public var requiresClientAuthentication: Bool { clients.contains { $0.authenticates } }
}

public struct ListenAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
  /// An IP literal (IPv6 without brackets) or a host name.
  public var host: String
  public var port: Int
  /// `listen ADDR:PORT tls CERT KEY`: callers connect with TLS. nil: plain text.
  public var tls: ListenerTLS?
  public init(host: String, port: Int, tls: ListenerTLS? = nil) {
    self.host = host
    self.port = port
    self.tls = tls
  }
  /// `host:port` (IPv6 in brackets); the TLS files are not part of it.
  public var description: String { IPText.authority(host, port) }
  /// `localhost`, 127.0.0.0/8 or `::1`.
  public var isLoopback: Bool { IPText.isLoopback(host) }
  /// Whether both name one socket (host and port), whatever their certificate files.
  public func sameSocket(as other: ListenAddress) -> Bool {
    host == other.host && port == other.port
  }
  /// What a bound listener is: its socket and whether it speaks TLS. Changing it needs a restart;
  /// changing the certificate files does not (a reload reads them again).
  public var socketShape: String { tls == nil ? description : "\(description) tls" }
}

/// The certificate chain and private key (PEM files) of a TLS listener. Paths only.
public struct ListenerTLS: Sendable, Equatable, Hashable {
  public var certFile: String
  public var keyFile: String
  public init(certFile: String, keyFile: String) {
    self.certFile = certFile
    self.keyFile = keyFile
  }
}

/// `report`: a request the policy would refuse is let through and logged as `report`;
/// `enforce`: it is refused.
public enum PolicyMode: String, Sendable, Equatable { case report, enforce }

/// `admin ADDR:PORT [token SECRET]`.
public struct AdminConfig: Sendable, Equatable {
  public var address: ListenAddress
  /// Callers send `Authorization: Bearer TOKEN`; nil (loopback only): no token needed.
  public var token: SecretRef?
  public var line: Int
  public init(address: ListenAddress, token: SecretRef?, line: Int) {
    self.address = address
    self.token = token
    self.line = line
  }
}

/// `limits-store redis HOST:PORT [password SECRET] [prefix P] [on-outage open|closed]
/// [timeout DURATION] [lease DURATION]`: where the fleet's shared rate buckets and concurrency leases live.
public struct LimitsStore: Sendable, Equatable {
  public var host: String
  public var port: Int
  /// `AUTH` with this password (Redis `requirepass`); nil: none.
  public var password: SecretRef?
  /// Prepended to every key, so several fleets can share one Redis.
  public var prefix: String = "credproxy:"
  /// When Redis cannot answer in time: true (default) limits locally, false refuses (503).
  public var failOpen: Bool = true
  /// The longest a request waits for Redis.
  public var timeoutMs: Int = 100
  /// A concurrency slot held in Redis expires this long after its last renewal (a replica renews
  /// its slots every third of it), so a crashed replica's slots come back.
  public var leaseMs: Int = 30_000
  public var line: Int

  public init(host: String, port: Int, line: Int) {
    self.host = host
    self.port = port
    self.line = line
  }

  /// `redis 10.0.0.5:6379`, for logs and the status page (never the password).
  public var description: String {
    "redis \(IPText.authority(host, port))"
  }
}

/// A `client NAME { … }` block: who a caller is. A caller is this client when it sends
/// `Proxy-Authorization: Basic base64(NAME:PASSWORD)` or `Bearer TOKEN`, or, sending neither,
/// connects from one of `from`. Each method alone identifies the client.
public struct ClientSpec: Sendable, Equatable {
  public var name: String
  public var password: SecretRef?
  public var token: SecretRef?
  public var from: [CIDR] = []
  /// `oidc issuer URL audience A [claim KEY VALUE]…`: the caller's own OIDC token identifies it.
  public var oidc: OIDCClientRule?
  /// `max-concurrent N`: requests in flight for this client across all routes.
  public var maxConcurrent: Int?
  public var line: Int

  public init(
    name: String, password: SecretRef? = nil, token: SecretRef? = nil, from: [CIDR] = [],
    oidc: OIDCClientRule? = nil, maxConcurrent: Int? = nil, line: Int
  ) {
    self.name = name
    self.password = password
    self.token = token
    self.from = from
    self.oidc = oidc
    self.maxConcurrent = maxConcurrent
    self.line = line
  }

  /// Has a password, a token or an OIDC issuer: something signed or secret the caller must present.
  public var authenticates: Bool { password != nil || token != nil || oidc != nil }

  /// How the client is recognised, for `check` and the status page; never a secret value:
  /// `password env:ALICE_PW, from 10.0.0.0/8`.
  public var identificationSummary: String {
    var parts: [String] = []
    if let password { parts.append("password \(password)") }
    if let token { parts.append("token \(token)") }
    if !from.isEmpty { parts.append("from " + from.map(\.description).joined(separator: " ")) }
    if let oidc { parts.append(oidc.description) }
    return parts.joined(separator: ", ")
  }
}

/// A client identified by an OIDC token its platform gave it (GitHub Actions, GitLab CI, a
/// Kubernetes service account): signed by `issuer`, for `audience`, with every `claims` pair.
public struct OIDCClientRule: Sendable, Equatable, CustomStringConvertible {
  public struct Claim: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
      self.key = key
      self.value = value
    }
  }
  /// The issuer URL exactly as the tokens' `iss` says it (https, or http to loopback).
  public var issuer: String
  public var audience: String
  public var claims: [Claim]

  public init(issuer: String, audience: String, claims: [Claim] = []) {
    self.issuer = issuer
    self.audience = audience
    self.claims = claims
  }

  public var description: String {
    (["oidc issuer \(issuer) audience \(audience)"] + claims.map { "claim \($0.key) \($0.value)" })
      .joined(separator: " ")
  }
}

/// `rate N/s [burst M]` or `rate N/m [burst M]`: a token bucket per client per route.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
  public enum Unit: String, Sendable, Equatable {
    case second = "s"
    case minute = "m"
  }
  public var count: Int
  public var unit: Unit
  /// Requests allowed back to back; defaults to `count`.
  public var burst: Int

  public init(count: Int, unit: Unit, burst: Int? = nil) {
    self.count = count
    self.unit = unit
    self.burst = burst ?? count
  }

  /// The refill rate.
  public var perSecond: Double { unit == .second ? Double(count) : Double(count) / 60 }

  /// `10/s burst 20`; the burst is left out when it is the default.
  public var description: String {
    burst == count ? "\(count)/\(unit.rawValue)" : "\(count)/\(unit.rawValue) burst \(burst)"
  }
}

public enum AccessLogTarget: Sendable, Equatable {
  case stderr
  case file(String)
  case off
}

public enum LogFormat: Sendable, Equatable { case text, json }

public enum UpstreamScheme: String, Sendable, Equatable {
  case https, http

  /// 443 for https, 80 for http.
  public var defaultPort: Int { self == .https ? 443 : 80 }
}

/// `upstream-http 1.1|2|auto`: which HTTP version a route speaks to its upstream.
public enum UpstreamHTTPVersion: String, Sendable, Equatable {
  /// HTTP/1.1 only (TLS offers just `http/1.1` by ALPN): one request per connection at a time,
  /// connections pooled and reused.
  case http11 = "1.1"
  /// HTTP/2: over TLS negotiated by ALPN (HTTP/1.1 if the server declines it), on plain http
  /// with prior knowledge (h2c); requests share connections as streams.
  case http2 = "2"
  /// HTTP/2 where TLS negotiates it, else HTTP/1.1 (plain http is always HTTP/1.1).
  case auto

  /// Chosen from `scripts/bench` (README, Performance): with 50 callers in flight h2 (all
  /// requests as streams of one connection) was level or ahead on CPU per request, ahead on
  /// requests/s in three of four runs, and 10,000 idle clients cost 10.7 KiB each against 13.4
  /// with HTTP/1.1. Also what credproxy did before the directive existed.
  public static let `default`: UpstreamHTTPVersion = .auto

  /// What the route speaks, for `check` and `explain`.
  public func summary(for scheme: UpstreamScheme) -> String {
    switch (self, scheme) {
    case (.http11, _): return "HTTP/1.1"
    case (.http2, .https): return "HTTP/2 (ALPN; HTTP/1.1 if the server declines)"
    case (.http2, .http): return "HTTP/2 with prior knowledge (h2c)"
    case (.auto, .https): return "HTTP/2 if ALPN agrees, else HTTP/1.1"
    case (.auto, .http): return "HTTP/1.1"
    }
  }
}

public struct Route: Sendable {
  /// The route's patterns as written, for logs and `explain` (e.g. `api.example.com/v1`).
  public var name: String
  public var patterns: [RoutePattern]
  public var upstream: UpstreamScheme = .https
  /// `upstream-http 1.1|2|auto`.
  public var upstreamHTTP: UpstreamHTTPVersion = .default
  /// `connect-to HOST:PORT`: dial there, keep the target's name for TLS and `Host`.
  public var connectTo: ListenAddress?
  /// Allowed methods (uppercased); nil means any.
  public var methods: Set<String>?
  public var auth: AuthSpec = .none
  public var deny: Bool = false
  public var connectTimeoutMs: Int?
  public var requestTimeoutMs: Int?
  public var maxBody: UInt64?
  /// The credentials block OAuth2/OIDC tokens come from (`credentials NAME`).
  public var credentials: String = CredentialSpec.defaultName
  /// `auth-header NAME`: the header that carries an OAuth2/OIDC token instead of `Authorization`
  /// (e.g. `X-Serverless-Authorization` for a Cloud Run app that needs its own `Authorization`).
  public var authHeader: String?
  /// `allow CLIENT…`: the clients that may use the route; nil: every client (and anonymous
  /// callers when no clients are defined). In file order.
  public var allow: [String]?
  /// `rate N/s [burst M]`: per client on this route.
  public var rate: RateLimit?
  /// `max-concurrent N`: requests in flight per client on this route.
  public var maxConcurrent: Int?
  /// `tunnel`: CONNECT to the route's host and port is allowed (end-to-end; no auth injected).
  public var tunnel: Bool = false
  /// `intercept`: CONNECT to the route's hosts is terminated with a leaf from the local CA, and
  /// the requests inside go through the same pipeline as plain ones.
  public var intercept: Bool = false
  /// `allow-private`: the route may dial private, loopback and link-local addresses.
  public var allowPrivate: Bool = false
  /// `mode report|enforce`; nil: the top-level mode (`ProxyConfig.effectiveMode`).
  public var mode: PolicyMode?
  /// Where the route starts in the file, for messages.
  public var line: Int

  public init(name: String, patterns: [RoutePattern], line: Int) {
    self.name = name
    self.patterns = patterns
    self.line = line
  }

  /// Whether `client` may use this route: always when there is no allow list; otherwise only a
  /// listed client (an anonymous caller, nil, never).
  public func allows(client: String?) -> Bool {
    guard let allow else { return true }
    guard let client else { return false }
    return allow.contains(client)
  }

  /// The port the upstream is dialled on: the one the caller wrote, else 443/80 by `upstream`.
  public func effectivePort(explicitPort: Int?) -> Int { explicitPort ?? upstream.defaultPort }

  /// The URL the request goes to, e.g. `https://api.example.com:443/v1/x` (port always shown).
  /// `host` as routed (lowercase, IPv6 without brackets).
  public func upstreamURL(host: String, explicitPort: Int?, pathAndQuery: String) -> String {
    let h = IPText.authorityHost(host)
    let p = pathAndQuery.isEmpty ? "/" : pathAndQuery
    return "\(upstream.rawValue)://\(h):\(effectivePort(explicitPort: explicitPort))\(p)"
  }

  /// The header an injected credential goes in: `auth-header`, else the auth type's own header
  /// (`Authorization`, or the name given to `auth header`); nil for `auth none`.
  public var injectedHeaderName: String? {
    switch auth {
    case .none: return nil
    case .header(let name, _): return name
    case .bearer, .basic: return "Authorization"
    case .oauth2, .oidc, .token, .basicToken: return authHeader ?? "Authorization"
    }
  }
}

/// `HOST[:PORT][/PATH-PREFIX]`; HOST is exact, `*.suffix` (one or more labels) or `*`.
public struct RoutePattern: Sendable, Equatable, CustomStringConvertible {
  public enum Host: Sendable, Equatable {
    case any
    /// Matches `x.suffix`, `x.y.suffix`, … but not `suffix` itself. Stored without the `*.`.
    case suffix(String)
    /// Lowercased, no trailing dot; an IPv6 literal without brackets, in canonical form.
    case exact(String)
  }
  public var host: Host
  /// nil: any port.
  public var port: Int?
  /// nil: any path. Matched on whole segments: `/v1` matches `/v1`, `/v1/x`, `/v1?q`, not `/v10`.
  /// A prefix ending in `/` matches any path starting with it.
  public var pathPrefix: String?

  public init(host: Host, port: Int?, pathPrefix: String?) {
    self.host = host
    self.port = port
    self.pathPrefix = pathPrefix
  }

  /// The normalised pattern, e.g. `*.example.com:8443/v1`.
  public var description: String {
    var s: String
    switch host {
    case .any: s = "*"
    case .suffix(let x): s = "*.\(x)"
    case .exact(let x): s = IPText.authorityHost(x)
    }
    if let port { s += ":\(port)" }
    if let pathPrefix { s += pathPrefix }
    return s
  }
}

/// The audience an OIDC ID token is minted for.
public enum OIDCAudience: Sendable, Equatable, CustomStringConvertible {
  /// `https://host[:port]` of the upstream (what Cloud Run expects); the default.
  case origin
  /// The upstream URL without its query (as Cloud Workflows does); one token per path.
  case url
  /// A configured custom audience.
  case fixed(String)

  public var description: String {
    switch self {
    case .origin: return "origin"
    case .url: return "url"
    case .fixed(let a): return a
    }
  }

  /// The audience for one request. `host` as routed (IPv6 without brackets); the port is left
  /// out when it is the scheme's default.
  public func resolve(upstream: UpstreamScheme, host: String, port: Int, pathAndQuery: String)
    -> String
  {
    switch self {
    case .fixed(let a): return a
    case .origin, .url:
      let h = IPText.authorityHost(host)
      var s = "\(upstream.rawValue)://\(h)"
      if port != upstream.defaultPort { s += ":\(port)" }
      if case .url = self {
        var path = pathAndQuery
        if let q = path.firstIndex(where: { $0 == "?" || $0 == "#" }) {
          path = String(path[..<q])
        }
        s += path.isEmpty ? "/" : path
      }
      return s
    }
  }
}

public enum AuthSpec: Sendable, Equatable {
  case none
  case bearer(SecretRef)
  case header(name: String, value: SecretRef)
  case basic(user: String, password: SecretRef)
  /// Google access token. Scopes normalised: split, de-duplicated, sorted.
  case oauth2(scopes: [String])
  /// Google ID token.
  case oidc(audience: OIDCAudience)
  /// `auth token`: the one token of the route's `credentials` (a program's token from
  /// `source exec`; a cloud-platform access token from a Google source).
  case token
  /// `auth basic USER token`: `Authorization: Basic base64(USER:<the token the route's
  /// credentials mint>)`, the form git over http takes (`x-access-token` for GitHub App tokens).
  case basicToken(user: String)

  public static let defaultScopes = ["https://www.googleapis.com/auth/cloud-platform"]

  public var typeName: String {
    switch self {
    case .none: return "none"
    case .bearer: return "bearer"
    case .header: return "header"
    case .basic: return "basic"
    case .oauth2: return "OAuth2"
    case .oidc: return "OIDC"
    case .token: return "token"
    case .basicToken: return "basic"
    }
  }

  /// `auth token` and `auth basic USER token`: the credentials block's one token as it is (no
  /// scopes, no audience).
  public var sendsTheCredentialsToken: Bool {
    switch self {
    case .token, .basicToken: return true
    default: return false
    }
  }

  /// True for OAuth2, OIDC and token: tokens minted from a credentials block.
  public var usesGoogleCredentials: Bool {
    switch self {
    case .oauth2, .oidc, .token, .basicToken: return true
    default: return false
    }
  }

  /// The secret this auth injects, if any.
  public var secret: SecretRef? {
    switch self {
    case .bearer(let s): return s
    case .header(_, let s): return s
    case .basic(_, let s): return s
    default: return nil
    }
  }

  /// Scopes as Workflows takes them: each word may hold several scopes separated by spaces,
  /// commas or other whitespace. Returns them split, de-duplicated and sorted (`ScopeList`).
  public static func normalizeScopes<S: Sequence>(_ words: S) -> [String]
  where S.Element: StringProtocol { ScopeList.normalize(words) }
}

/// Where a secret comes from. Resolved when used (`resolve(environment:)`), never printed.
public enum SecretRef: Sendable, Hashable, CustomStringConvertible {
  case literal(String)
  case env(String)
  case file(String)

  /// Safe to print: names the source, never the value.
  public var description: String {
    switch self {
    case .literal: return "inline secret"
    case .env(let n): return "env:\(n)"
    case .file(let p): return "file:\(p)"
    }
  }
}

/// A `credentials NAME { … }` block: where OAuth2 access tokens and OIDC ID tokens come from.
public struct CredentialSpec: Sendable, Equatable {
  public static let defaultName = "default"
  public static let defaultIAMEndpoint = GoogleEndpoints.iamCredentials
  public static let defaultRefreshWindowMs = 300_000

  public var name: String
  public var source: CredentialSource
  /// `iam-endpoint URL`: base URL of the IAM Credentials API; nil = `defaultIAMEndpoint`.
  public var iamEndpoint: String?
  /// `refresh-window D`: refresh in the background this long before the token expires.
  public var refreshWindowMs: Int
  /// The block says `refresh-window`: honour it as written. The default is also capped at a
  /// quarter of a short token lifetime.
  public var refreshWindowSet: Bool
  /// Where the block starts; 0 for the implicit `default`.
  public var line: Int

  public init(
    name: String, source: CredentialSource, iamEndpoint: String? = nil,
    refreshWindowMs: Int? = nil, line: Int
  ) {
    self.name = name
    self.source = source
    self.iamEndpoint = iamEndpoint
    self.refreshWindowMs = refreshWindowMs ?? CredentialSpec.defaultRefreshWindowMs
    self.refreshWindowSet = refreshWindowMs != nil
    self.line = line
  }

  /// The same credential: everything but where the block stands in the file. A reload keeps the
  /// cached tokens of a credential that only moved.
  public func mintsTheSame(as other: CredentialSpec) -> Bool {
    var moved = other
    moved.line = line
    return self == moved
  }
}

public enum CredentialSource: Sendable, Equatable {
  /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, metadata.
  case adc
  /// A service-account key file (JSON).
  case keyFile(path: String)
  /// The metadata server (GCE, Cloud Run, GKE).
  case metadata
  /// IAM Credentials API impersonation. `via`: the credentials block whose token calls IAM
  /// (nil: application default credentials); `delegates`: the delegation chain, in order.
  case impersonate(email: String, via: String?, delegates: [String])
  /// An `authorized_user` JSON file (gcloud's ADC file). Access tokens only.
  case refreshToken(path: String)
  /// A generic OAuth 2.0 client-credentials grant. Access tokens only.
  case clientCredentials(
    tokenURL: String, clientID: String, clientSecret: SecretRef, scopes: [String])
  /// `source exec PROGRAM [ARGS…]`: a host program prints one token (`auth token` only).
  case exec(ExecCommand)
  /// A GitHub App installation token (`source github-app …`).
  case githubApp(GitHubAppSpec)

  public var typeName: String {
    switch self {
    case .adc: return "adc"
    case .keyFile: return "key-file"
    case .metadata: return "metadata"
    case .impersonate: return "impersonate"
    case .refreshToken: return "refresh-token"
    case .clientCredentials: return "client-credentials"
    case .exec: return "exec"
    case .githubApp: return "github-app"
    }
  }

  /// Whether this source can mint an ID token for an arbitrary audience (OIDC).
  public var canMintIDTokens: Bool {
    switch self {
    case .refreshToken, .clientCredentials, .exec, .githubApp: return false
    default: return true
    }
  }
}

/// A program credproxy runs (no shell) for a token: `source exec PROGRAM [ARGS…]`.
public struct ExecCommand: Sendable, Equatable, CustomStringConvertible {
  public static let defaultTimeoutMs = 10_000
  /// A path (resolved against the config file's directory) or a bare name searched in `PATH`.
  public var program: String
  public var arguments: [String]
  /// `exec-timeout D`: the program is killed after this long.
  public var timeoutMs: Int

  public init(program: String, arguments: [String], timeoutMs: Int = ExecCommand.defaultTimeoutMs) {
    self.program = program
    self.arguments = arguments
    self.timeoutMs = timeoutMs
  }

  /// The program only: arguments may carry anything and are never shown.
  public var description: String { program }
}

public struct ConfigDiagnostic: Error, Sendable, Equatable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int
  public var message: String
  public init(file: String, line: Int, column: Int, message: String) {
    self.file = file
    self.line = line
    self.column = column
    self.message = message
  }
  /// `proxy.conf:12:5: unknown auth type "oauth"; expected one of …`
  public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// One or more diagnostics that stop a config from loading.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
  public var diagnostics: [ConfigDiagnostic]
  public init(_ diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }
  public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// The X.509 name constraints a local CA for this config's `intercept` routes can carry, so that
/// its key cannot sign for any other site: `*.suffix` → names under `.suffix`, an exact name →
/// that name (and, by RFC 5280's rule, the names under it), an IP literal → that address. A `*`
/// pattern cannot be constrained; then the CA gets none (`blockers` says which routes).
public struct InterceptNameConstraints: Sendable, Equatable {
  public enum Name: Sendable, Hashable {
    /// An exact DNS name.
    case dns(String)
    /// Names under this suffix (a `*.suffix` pattern), not the suffix itself.
    case subdomains(String)
    /// An IPv4 or IPv6 address, canonical text.
    case ip(String)
  }

  /// A route pattern that prevents name constraints.
  public struct Blocker: Sendable, Equatable {
    public var route: Int
    public var line: Int
    public var pattern: String
  }

  /// Every name the intercept routes need, in file order, without repeats.
  public var names: [Name] = []
  public var blockers: [Blocker] = []
  /// How many routes intercept (deny routes excluded: they never need a leaf).
  public var interceptRoutes = 0

  /// Constraints can be written: some route intercepts and every intercepted pattern is a domain
  /// name or an address.
  public var constrainable: Bool { interceptRoutes > 0 && blockers.isEmpty }
}

extension ProxyConfig {
  /// Where `credproxy ca init` puts the CA when neither `ca-cert`/`ca-key` nor `--dir` says.
  public static let defaultCAFiles = (cert: "credproxy-ca/ca.pem", key: "credproxy-ca/ca-key.pem")

  /// The CA files this config signs leaves with: `ca-cert`/`ca-key`, else the default place.
  public var caFiles: (cert: String, key: String) {
    (caCert ?? Self.defaultCAFiles.cert, caKey ?? Self.defaultCAFiles.key)
  }

  /// Whether any (non-deny) route intercepts, so the proxy needs its local CA.
  public var intercepts: Bool { routes.contains { $0.intercept && !$0.deny } }

  public var interceptNameConstraints: InterceptNameConstraints {
    var result = InterceptNameConstraints()
    for (index, route) in routes.enumerated() where route.intercept && !route.deny {
      result.interceptRoutes += 1
      for p in route.patterns {
        let name: InterceptNameConstraints.Name
        switch p.host {
        case .any:
          result.blockers.append(.init(route: index + 1, line: route.line, pattern: p.description))
          continue
        case .suffix(let s):
          name = .subdomains(s)
        case .exact(let h):
          name = IPAddress(h) != nil ? .ip(h) : .dns(h)
        }
        if !result.names.contains(name) { result.names.append(name) }
      }
    }
    return result
  }
}

/// `source github-app app-id N installation-id M private-key SECRET [api-url URL]
/// [repositories NAME…] [permissions NAME:LEVEL…]`: installation tokens minted with an RS256 app
/// JWT, narrowed to `repositories` and `permissions` when given.
public struct GitHubAppSpec: Sendable, Equatable {
  public static let defaultAPIURL = "https://api.github.com"
  /// The app's numeric ID (or its client ID): the JWT's `iss`.
  public var appID: String
  public var installationID: String
  public var privateKey: SecretRef
  public var apiURL: String
  /// Repository names (without the owner); empty: every repository of the installation.
  public var repositories: [String]
  /// Permission name and level (`contents`, `read`); empty: the installation's permissions.
  public var permissions: [Permission]

  public struct Permission: Sendable, Equatable {
    public var name: String
    public var level: String
    public init(name: String, level: String) {
      self.name = name
      self.level = level
    }
  }

  public init(
    appID: String, installationID: String, privateKey: SecretRef,
    apiURL: String = GitHubAppSpec.defaultAPIURL, repositories: [String] = [],
    permissions: [Permission] = []
  ) {
    self.appID = appID
    self.installationID = installationID
    self.privateKey = privateKey
    self.apiURL = apiURL
    self.repositories = repositories
    self.permissions = permissions
  }
}
