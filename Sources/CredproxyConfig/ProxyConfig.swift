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
  public var connectTimeoutMs: Int = 10_000
  public var requestTimeoutMs: Int = 300_000
  public var idleTimeoutMs: Int = 60_000
  /// Deadline to receive a whole request head once its first byte arrived (slowloris guard).
  public var headerTimeoutMs: Int = 10_000
  public var maxBody: UInt64 = 1 << 40
  public var accessLog: AccessLogTarget = .stderr
  public var logFormat: LogFormat = .text
  /// In file order: the first route that matches a request wins.
  public var routes: [Route] = []
  /// `credentials NAME { … }` blocks, in file order. `default` without a block is implicit
  /// (`source adc`): use `credential(named:)` to look one up.
  public var credentials: [CredentialSpec] = []
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
}

public struct ListenAddress: Sendable, Equatable, Hashable, CustomStringConvertible {
  /// An IP literal (IPv6 without brackets) or a host name.
  public var host: String
  public var port: Int
  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }
  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
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

public struct Route: Sendable {
  /// The route's patterns as written, for logs and `explain` (e.g. `api.example.com/v1`).
  public var name: String
  public var patterns: [RoutePattern]
  public var upstream: UpstreamScheme = .https
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
  /// Where the route starts in the file, for messages.
  public var line: Int

  public init(name: String, patterns: [RoutePattern], line: Int) {
    self.name = name
    self.patterns = patterns
    self.line = line
  }

  /// The port the upstream is dialled on: the one the caller wrote, else 443/80 by `upstream`.
  public func effectivePort(explicitPort: Int?) -> Int { explicitPort ?? upstream.defaultPort }

  /// The URL the request goes to, e.g. `https://api.example.com:443/v1/x` (port always shown).
  /// `host` as routed (lowercase, IPv6 without brackets).
  public func upstreamURL(host: String, explicitPort: Int?, pathAndQuery: String) -> String {
    let h = host.contains(":") ? "[\(host)]" : host
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
    case .oauth2, .oidc: return authHeader ?? "Authorization"
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
    case .exact(let x): s = x.contains(":") ? "[\(x)]" : x
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
      let h = host.contains(":") ? "[\(host)]" : host
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

  public static let defaultScopes = ["https://www.googleapis.com/auth/cloud-platform"]

  public var typeName: String {
    switch self {
    case .none: return "none"
    case .bearer: return "bearer"
    case .header: return "header"
    case .basic: return "basic"
    case .oauth2: return "OAuth2"
    case .oidc: return "OIDC"
    }
  }

  /// True for OAuth2 and OIDC: tokens minted from a credentials block.
  public var usesGoogleCredentials: Bool {
    switch self {
    case .oauth2, .oidc: return true
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

  /// Scopes as Workflows takes them: each word may hold several scopes separated by spaces
  /// and/or commas. Returns them split, de-duplicated and sorted.
  public static func normalizeScopes<S: Sequence>(_ words: S) -> [String]
  where S.Element: StringProtocol {
    var set = Set<String>()
    for w in words {
      for part in w.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }) {
        set.insert(String(part))
      }
    }
    return set.sorted()
  }
}

/// Where a secret comes from. Resolved when used (`resolve(environment:)`), never printed.
public enum SecretRef: Sendable, Equatable, CustomStringConvertible {
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
  public static let defaultIAMEndpoint = "https://iamcredentials.googleapis.com"
  public static let defaultRefreshWindowMs = 300_000

  public var name: String
  public var source: CredentialSource
  /// `iam-endpoint URL`: base URL of the IAM Credentials API; nil = `defaultIAMEndpoint`.
  public var iamEndpoint: String?
  /// `refresh-window D`: refresh in the background this long before the token expires.
  public var refreshWindowMs: Int
  /// Where the block starts; 0 for the implicit `default`.
  public var line: Int

  public init(
    name: String, source: CredentialSource, iamEndpoint: String? = nil,
    refreshWindowMs: Int = CredentialSpec.defaultRefreshWindowMs, line: Int
  ) {
    self.name = name
    self.source = source
    self.iamEndpoint = iamEndpoint
    self.refreshWindowMs = refreshWindowMs
    self.line = line
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

  public var typeName: String {
    switch self {
    case .adc: return "adc"
    case .keyFile: return "key-file"
    case .metadata: return "metadata"
    case .impersonate: return "impersonate"
    case .refreshToken: return "refresh-token"
    case .clientCredentials: return "client-credentials"
    }
  }

  /// Whether this source can mint an ID token for an arbitrary audience (OIDC).
  public var canMintIDTokens: Bool {
    switch self {
    case .refreshToken, .clientCredentials: return false
    default: return true
    }
  }
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
