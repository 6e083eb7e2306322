import Foundation

extension ProxyConfig {
  /// Problems that depend on the machine rather than the file: secret variables that are unset,
  /// secret or key files that cannot be read. They do not stop the proxy (a fresh machine must be
  /// able to start it); requests that need the secret fail until it is there. Never holds a value.
  public func secretWarnings(environment: [String: String]) -> [ConfigDiagnostic] {
    var out: [ConfigDiagnostic] = []
    func add(_ line: Int, _ message: String) {
      out.append(ConfigDiagnostic(file: sourcePath, line: line, column: 1, message: message))
    }
    if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
      add(caFileLine, "ca-file \(caFile) cannot be read")
    }
    if intercepts {
      for (what, path, line) in [
        ("ca-cert", caFiles.cert, caCertLine), ("ca-key", caFiles.key, caKeyLine),
      ] where !FileManager.default.isReadableFile(atPath: path) {
        add(
          line,
          "\(what) \(path) cannot be read; serve refuses to start without the local CA (make one with: credproxy ca init)"
        )
      }
    }
    for (i, route) in routes.enumerated() where !route.deny {
      if let secret = route.auth.secret, let problem = secret.problem(environment: environment) {
        add(
          route.line,
          "route #\(i + 1) \(route.name): \(problem); its requests get 503 credential_unavailable until it is available"
        )
      }
    }
    for client in clients {
      for (what, ref) in [("password", client.password), ("token", client.token)] {
        if let ref, let problem = ref.problem(environment: environment) {
          add(
            client.line,
            "client \"\(client.name)\": \(what) \(problem); the client cannot identify with its \(what) until it is available"
          )
        }
      }
    }
    if let admin, let token = admin.token, let problem = token.problem(environment: environment) {
      add(
        admin.line,
        "admin token \(problem); the admin listener refuses every request until it is available")
    }
    if let store = limitsStore, let problem = store.password?.problem(environment: environment) {
      add(
        store.line, "limits-store password \(problem); serve refuses to start until it is available"
      )
    }
    for (i, l) in listeners.enumerated() {
      guard let tls = l.tls else { continue }
      let line = i < listenLines.count ? listenLines[i] : 0
      for file in [tls.certFile, tls.keyFile]
      where !FileManager.default.isReadableFile(atPath: file) {
        add(line, "listen \(l) tls: \(file) cannot be read")
      }
    }
    for spec in credentials {
      switch spec.source {
      case .keyFile(let p), .refreshToken(let p):
        if !FileManager.default.isReadableFile(atPath: p) {
          add(
            spec.line, "credentials \"\(spec.name)\": \(spec.source.typeName) \(p) cannot be read")
        }
      case .clientCredentials(_, _, let secret, _):
        if let problem = secret.problem(environment: environment) {
          add(spec.line, "credentials \"\(spec.name)\": client-secret \(problem)")
        }
      case .githubApp(let app):
        if let problem = app.privateKey.problem(environment: environment, multiline: true) {
          add(spec.line, "credentials \"\(spec.name)\": private-key \(problem)")
        }
      default:
        break
      }
    }
    return out
  }
}

/// The text `credproxy check` prints for a config that loaded: what the proxy will do, then
/// `warning:` lines. Names secret sources, never values.
public enum CheckReport {
  /// What the CLI learned by loading the local CA (the config module does not read keys): lines
  /// for the report's `local CA:` section and warnings (an intercepted host the CA cannot sign
  /// for, a CA about to expire).
  public struct LocalCASection: Sendable {
    public var lines: [String]
    public var warnings: [String]
    public init(lines: [String], warnings: [String]) {
      self.lines = lines
      self.warnings = warnings
    }
  }

  public static func render(
    _ config: ProxyConfig, environment: [String: String], localCA: LocalCASection? = nil
  ) -> String {
    var lines: [String] = []
    lines.append("\(config.sourcePath): configuration is valid")
    lines.append("")
    lines.append(
      "listen: "
        + config.listeners.map { l in
          guard let tls = l.tls else { return l.description }
          return "\(l) (tls \(Format.word(tls.certFile)) \(Format.word(tls.keyFile)))"
        }.joined(separator: ", "))
    lines.append(
      "ca-file: " + (config.caFile.map(Format.word) ?? "none (system trust store, SSL_CERT_FILE)"))
    lines.append(
      "timeouts: connect \(Format.duration(config.connectTimeoutMs)), request \(Format.duration(config.requestTimeoutMs)), idle \(Format.duration(config.idleTimeoutMs)), header \(Format.duration(config.headerTimeoutMs))"
    )
    lines.append("max-body: \(Format.size(config.maxBody))")
    let log: String
    switch config.accessLog {
    case .stderr: log = "stderr"
    case .off: log = "off"
    case .file(let p): log = Format.word(p)
    }
    lines.append("access-log: \(log)")
    lines.append("log-format: \(config.logFormat == .json ? "json" : "text")")
    let audit: String
    switch config.auditLog {
    case .stderr: audit = "stderr"
    case .off: audit = "off"
    case .file(let p): audit = Format.word(p)
    }
    lines.append("audit-log: \(audit)")
    lines.append(
      "log-queries: \(config.logQueries ? "on (secret-looking parameters redacted)" : "off")")
    lines.append("mode: \(config.mode.rawValue)")
    if let admin = config.admin {
      let token = admin.token.map { "token \($0)" } ?? "no token, loopback only"
      lines.append("admin: \(admin.address) (\(token))")
    } else {
      lines.append("admin: off")
    }
    if let store = config.limitsStore {
      let policy = store.failOpen ? "open (limit locally)" : "closed (refuse limited requests)"
      lines.append(
        "limits-store: \(store.description), keys \(store.prefix)…, on outage \(policy), wait at most \(Format.duration(store.timeoutMs)), leases \(Format.duration(store.leaseMs))\(store.password.map { ", password \($0)" } ?? "")"
      )
    } else {
      lines.append("limits-store: none (rate and max-concurrent are per process)")
    }
    lines.append("shutdown-timeout: \(Format.duration(config.shutdownTimeoutMs))")
    let intercepting = config.routes.filter { $0.intercept && !$0.deny }.count
    if intercepting > 0 {
      let files = config.caFiles
      lines.append(
        "interception: \(intercepting) route\(intercepting == 1 ? " terminates" : "s terminate") CONNECT with leaves from the local CA (ca-cert \(Format.word(files.cert)), ca-key \(Format.word(files.key)))"
      )
    } else {
      lines.append("interception: off (no intercept routes)")
    }
    lines.append(
      "metadata-server: "
        + (config.metadataServer.map {
          "\($0) (GCE metadata stub: placeholder tokens only, replaced on Google-auth routes)"
        } ?? "off"))
    if let localCA {
      lines.append("")
      lines.append("local CA:")
      lines += localCA.lines.map { "  " + $0 }
    }
    lines.append("")

    if config.clients.isEmpty {
      lines.append("clients: none (every caller is anonymous)")
    } else {
      lines.append("clients (a caller that matches none is refused with 407):")
      var rows = [["name", "identified by", "max-concurrent", "line"]]
      for c in config.clients {
        rows.append([
          c.name, c.identificationSummary, c.maxConcurrent.map(String.init) ?? "-", "\(c.line)",
        ])
      }
      lines += Format.table(rows)
    }
    lines.append("")

    if config.routes.isEmpty {
      lines.append("routes: none (every request is refused)")
    } else {
      lines.append("routes (first match wins; a request no route matches is refused with 403):")
      var rows = [
        ["#", "patterns", "upstream", "connect-to", "methods", "auth", "deny", "limits", "line"]
      ]
      for (i, r) in config.routes.enumerated() {
        var limits: [String] = []
        if let ms = r.connectTimeoutMs { limits.append("connect-timeout \(Format.duration(ms))") }
        if let ms = r.requestTimeoutMs { limits.append("request-timeout \(Format.duration(ms))") }
        if let n = r.maxBody { limits.append("max-body \(Format.size(n))") }
        rows.append([
          "\(i + 1)",
          r.patterns.map(\.description).joined(separator: " "),
          "\(r.upstream.rawValue) \(r.upstreamHTTP == .http11 ? "h1.1" : r.upstreamHTTP == .http2 ? "h2" : "auto")",
          r.connectTo?.description ?? "-",
          r.methods.map { $0.sorted().joined(separator: ",") } ?? "any",
          Format.auth(r),
          r.deny ? "deny" : "-",
          limits.isEmpty ? "-" : limits.joined(separator: ", "),
          "\(r.line)",
        ])
      }
      lines += Format.table(rows)
      lines.append("")
      lines.append("route policy:")
      var policy = [["#", "clients", "rate", "max-concurrent", "connect", "allow-private", "mode"]]
      let everyone = config.clients.isEmpty ? "anyone" : "every client"
      for (i, r) in config.routes.enumerated() {
        policy.append([
          "\(i + 1)",
          r.allow.map { $0.joined(separator: ",") } ?? everyone,
          r.rate?.description ?? "-",
          r.maxConcurrent.map(String.init) ?? "-",
          r.intercept ? "intercept" : r.tunnel ? "tunnel" : "-",
          r.allowPrivate ? "allow-private" : "-",
          config.effectiveMode(r).rawValue,
        ])
      }
      lines += Format.table(policy)
    }

    var specs = config.credentials
    let usesImplicitDefault = config.routes.contains {
      $0.auth.usesGoogleCredentials && $0.credentials == CredentialSpec.defaultName
    }
    if usesImplicitDefault && !specs.contains(where: { $0.name == CredentialSpec.defaultName }) {
      specs.insert(CredentialSpec(name: CredentialSpec.defaultName, source: .adc, line: 0), at: 0)
    }
    if !specs.isEmpty {
      lines.append("")
      lines.append("credentials:")
      var rows = [["name", "source", "refresh-window", "iam-endpoint", "line"]]
      for c in specs {
        rows.append([
          c.name,
          Format.source(c.source),
          Format.duration(c.refreshWindowMs),
          c.iamEndpoint ?? "default",
          c.line == 0 ? "implicit" : "\(c.line)",
        ])
      }
      lines += Format.table(rows)
    }

    let warnings =
      (config.warnings + config.secretWarnings(environment: environment)).map(\.description)
      + (localCA?.warnings ?? [])
    if !warnings.isEmpty {
      lines.append("")
      for w in warnings { lines.append("warning: \(w)") }
    }
    lines.append("")
    let r = config.routes.count
    let c = config.credentials.count
    let k = config.clients.count
    let clients = k == 0 ? "" : ", \(k) client\(k == 1 ? "" : "s")"
    lines.append(
      "\(r) route\(r == 1 ? "" : "s"), \(c) credentials block\(c == 1 ? "" : "s")\(clients), \(warnings.count) warning\(warnings.count == 1 ? "" : "s")"
    )
    return lines.joined(separator: "\n") + "\n"
  }
}
