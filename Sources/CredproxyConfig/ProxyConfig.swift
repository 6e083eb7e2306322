import HTTP1

/// The loaded configuration: what `proxy.conf` says, validated. Built by `ConfigParser`.
public struct ProxyConfig: Sendable {
  public var sourcePath: String
  public var listeners: [ListenAddress] = []
  /// Extra CA bundle for upstream TLS verification (`ca-file`); `SSL_CERT_FILE` is honoured too.
  public var caFile: String?
  public var connectTimeoutMs: Int = 10_000
  public var requestTimeoutMs: Int = 300_000
  public var idleTimeoutMs: Int = 60_000
  /// Deadline to receive a whole request head once its first byte arrived (slowloris guard).
  public var headerTimeoutMs: Int = 10_000
  public var maxBody: UInt64 = 1 << 40
  public var accessLog: AccessLogTarget = .stderr
  public var logFormat: LogFormat = .text
  public var routes: [Route] = []
  /// Things `check` prints but that do not stop the proxy (e.g. a secret variable that is unset).
  public var warnings: [ConfigDiagnostic] = []

  public init(sourcePath: String) { self.sourcePath = sourcePath }
}

public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
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

public enum UpstreamScheme: String, Sendable, Equatable { case https, http }

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
  /// Where the route starts in the file, for messages.
  public var line: Int

  public init(name: String, patterns: [RoutePattern], line: Int) {
    self.name = name
    self.patterns = patterns
    self.line = line
  }
}

/// `HOST[:PORT][/PATH-PREFIX]`; HOST is exact, `*.suffix` (one or more labels) or `*`.
public struct RoutePattern: Sendable, Equatable {
  public enum Host: Sendable, Equatable {
    case any
    /// Matches `x.suffix`, `x.y.suffix`, … but not `suffix` itself. Stored without the `*.`.
    case suffix(String)
    case exact(String)
  }
  public var host: Host
  /// nil: any port.
  public var port: Int?
  /// nil: any path. Matched on whole segments: `/v1` matches `/v1`, `/v1/x`, `/v1?q`, not `/v10`.
  public var pathPrefix: String?

  public init(host: Host, port: Int?, pathPrefix: String?) {
    self.host = host
    self.port = port
    self.pathPrefix = pathPrefix
  }
}

public enum AuthSpec: Sendable {
  case none
  case bearer(SecretRef)
  case header(name: String, value: SecretRef)
  case basic(user: String, password: SecretRef)
  /// Reserved for the Google credentials work; `check` reports it as not available yet.
  case oauth2(scopes: [String])
  case oidc(audience: String?)

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
}

/// Where a secret comes from. Its value is read at load time and never printed.
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
