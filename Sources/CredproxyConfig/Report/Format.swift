import Foundation

/// Durations and sizes written back the way `proxy.conf` spells them.
enum Format {
  static func duration(_ ms: Int) -> String {
    if ms % 3_600_000 == 0 { return "\(ms / 3_600_000)h" }
    if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
    if ms % 1000 == 0 { return "\(ms / 1000)s" }
    return "\(ms)ms"
  }

  static func size(_ bytes: UInt64) -> String {
    if bytes == 0 { return "0" }
    if bytes % (1 << 30) == 0 { return "\(bytes >> 30)g" }
    if bytes % (1 << 20) == 0 { return "\(bytes >> 20)m" }
    if bytes % (1 << 10) == 0 { return "\(bytes >> 10)k" }
    return "\(bytes)"
  }

  /// A config path or name as a word: quoted when it holds spaces or quotes.
  static func word(_ s: String) -> String {
    if !s.isEmpty && !s.contains(where: { $0 == " " || $0 == "\"" || $0 == "#" || $0 == "\t" }) {
      return s
    }
    return "\""
      + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      + "\""
  }

  /// Left-aligned columns separated by two spaces; the last column is not padded.
  static func table(_ rows: [[String]], indent: String = "  ") -> [String] {
    guard let width = rows.map(\.count).max() else { return [] }
    var widths = [Int](repeating: 0, count: width)
    for row in rows {
      for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
    }
    return rows.map { row in
      var line = indent
      for (i, cell) in row.enumerated() {
        line += cell
        if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
      }
      while line.hasSuffix(" ") { line.removeLast() }
      return line
    }
  }

  static func auth(_ route: Route) -> String {
    switch route.auth {
    case .none: return "none"
    case .bearer(let s): return "bearer \(s)"
    case .header(let name, let s): return "header \(name) \(s)"
    case .basic(let user, let s): return "basic \(word(user)) \(s)"
    case .basicToken(let user): return "basic \(word(user)) token credentials \(route.credentials)"
    case .oauth2(let scopes):
      var out = "OAuth2 scopes \(scopes.joined(separator: ",")) credentials \(route.credentials)"
      if let h = route.authHeader { out += " auth-header \(h)" }
      return out
    case .oidc(let audience):
      var out = "OIDC audience \(audience) credentials \(route.credentials)"
      if let h = route.authHeader { out += " auth-header \(h)" }
      return out
    case .token:
      var out = "token credentials \(route.credentials)"
      if let h = route.authHeader { out += " auth-header \(h)" }
      return out
    }
  }

  static func source(_ source: CredentialSource) -> String {
    switch source {
    case .adc: return "adc"
    case .metadata: return "metadata"
    case .keyFile(let p): return "key-file \(word(p))"
    case .refreshToken(let p): return "refresh-token \(word(p))"
    case .impersonate(let email, let via, let delegates):
      var out = "impersonate \(email) via \(via ?? "application default credentials")"
      if !delegates.isEmpty { out += " delegates \(delegates.joined(separator: " "))" }
      return out
    case .clientCredentials(let url, let id, let secret, let scopes):
      var out = "client-credentials token-url \(url) client-id \(word(id)) client-secret \(secret)"
      if !scopes.isEmpty { out += " scopes \(scopes.joined(separator: ","))" }
      return out
    case .exec(let command):
      // Arguments are left out: they may carry anything.
      let args = command.arguments.isEmpty ? "" : " (\(command.arguments.count) arguments)"
      return "exec \(word(command.program))\(args) timeout \(command.timeoutMs / 1000)s"
    case .githubApp(let app):
      var out =
        "github-app app-id \(word(app.appID)) installation-id \(app.installationID) private-key \(app.privateKey) api-url \(app.apiURL)"
      if !app.repositories.isEmpty {
        out += " repositories \(app.repositories.joined(separator: " "))"
      }
      if !app.permissions.isEmpty {
        out +=
          " permissions " + app.permissions.map { "\($0.name):\($0.level)" }.joined(separator: " ")
      }
      return out
    }
  }
}
