// The parser's public entry points and the state of one parse. The parse runs in three phases,
// each in its own file: BlockStructure.swift (blocks, braces, error recovery and dispatch through
// the directive table), DirectiveTable.swift with Directives.swift, AuthAndSource.swift and
// Arguments.swift (what each directive means), CrossChecks.swift (the checks that need the whole
// file: undefined names, unsafe or useless combinations, warnings).
import Foundation

/// Reads `proxy.conf` into a validated `ProxyConfig`. Collects every error it can and throws them
/// together as a `ConfigError`; each is `file:line:col: what is wrong; expected what`.
public struct ConfigParser: Sendable {
  public init() {}

  /// Parses config text. `path` is used in messages and to resolve relative paths.
  /// - Throws: `ConfigError`.
  public func parse(text: String, path: String) throws -> ProxyConfig {
    var session = ParseSession(file: path)
    return try session.run(text)
  }

  /// Parses config text. `path` is used in messages and to resolve relative paths.
  /// - Throws: `ConfigError`.
  public static func parse(text: String, path: String = "proxy.conf") throws -> ProxyConfig {
    try ConfigParser().parse(text: text, path: path)
  }
}

/// Reads and parses the config file at `path`.
/// - Throws: `ConfigError` (an unreadable file is one diagnostic at line 0 naming the path).
public func loadConfig(path: String) throws -> ProxyConfig {
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
  return try ConfigParser().parse(text: text, path: path)
}

// MARK: - The state of one parse

/// What the cross-checks need to know about a route beyond the model: where things were written.
struct RouteInfo {
  var head: Token
  var authToken: Token?
  /// The route's auth line was rejected (unknown, unavailable, bad arguments).
  var authFailed = false
  var credentialsToken: Token?
  var authHeaderToken: Token?
  var allowTokens: [Token] = []
  var tunnelToken: Token?
}

struct ClientInfo {
  var nameToken: Token
  var tokenToken: Token?
}

struct CredentialInfo {
  var nameToken: Token
  var viaToken: Token?
  var via: String?
}

struct ParseSession {
  let file: String
  let baseDir: String
  var errors: [ConfigDiagnostic] = []
  var warnings: [ConfigDiagnostic] = []
  var config: ProxyConfig
  /// The top level, read as one block that spans the file around the other blocks.
  var top = Block(kind: .top)
  var listenSeen: [ListenAddress: Int] = [:]
  /// Each `listen` with its address word, for the cross-checks.
  var listenTokens: [Token] = []
  var adminToken: Token?
  var clientInfos: [String: ClientInfo] = [:]
  var routeInfos: [RouteInfo] = []
  var credentialInfos: [String: CredentialInfo] = [:]

  init(file: String) {
    self.file = file
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
    readTopLevel(structure(Lexer.lex(text, file: file, errors: &errors)))
    finish()
    if !errors.isEmpty {
      errors.sort { ($0.line, $0.column) < ($1.line, $1.column) }
      throw ConfigError(errors)
    }
    warnings.sort { ($0.line, $0.column) < ($1.line, $1.column) }
    config.warnings = warnings
    return config
  }
}
