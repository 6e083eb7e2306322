// The two directives with a grammar of their own: `auth TYPE …` in a route and `source TYPE …` in
// a credentials block.

private let authTypesExpected =
  "expected one of none, bearer, header, basic, OAuth2, OIDC, token"
private let sourceTypesExpected =
  "expected one of adc, key-file, metadata, impersonate, refresh-token, client-credentials, exec, github-app"

extension ParseSession {
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
    case "token":
      guard arity(s, 0, "auth token (the token of the route's credentials)", skip: 2) else {
        return nil
      }
      return .token
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
      guard arity(s, 2, "auth basic USER SECRET|token", skip: 2) else { return nil }
      let user = rest[0].text
      var ok = true
      if user.contains(":") || user.unicodeScalars.contains(where: { $0.value < 0x20 }) {
        error(
          rest[0], "basic auth user \"\(user)\" contains a colon; expected a user name without :")
        ok = false
      }
      // The bare word `token`: the token the route's credentials mint (quote it for a literal).
      if rest[1].isKeyword("token") { return ok ? .basicToken(user: user) : nil }
      let ref = secret(rest[1])
      guard ok, let ref else { return nil }
      return .basic(user: user, password: ref)
    case "oauth2", "oidc":
      let name = type.keyword == "oauth2" ? "OAuth2" : "OIDC"
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
    case "exec":
      guard let program = rest.first else {
        error(type, "exec is missing its program; expected source exec PROGRAM [ARGS…]")
        return nil
      }
      guard !program.text.isEmpty else {
        error(program, "empty program; expected source exec PROGRAM [ARGS…]")
        return nil
      }
      // A bare name is looked up in PATH when the credential is loaded; a path is relative to
      // the config file like every other path.
      let resolved = program.text.contains("/") ? path(program) : program.text
      guard let resolved else { return nil }
      return .exec(ExecCommand(program: resolved, arguments: rest.dropFirst().map(\.text)))
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
          if validName(v, "credentials") {
            via = v.text
            info.via = v.text
            info.viaToken = v
          } else {
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
    case "github-app":
      return parseGitHubApp(type, rest).map { .githubApp($0) }
    default:
      error(type, "unknown credential source \"\(type.text)\"; \(sourceTypesExpected)")
      return nil
    }
  }
}

extension ParseSession {
  /// `source github-app app-id N installation-id M private-key SECRET [api-url URL]
  /// [repositories NAME…] [permissions NAME:LEVEL…]`: keywords in any order; a list runs to the
  /// next keyword (quote a repository named like one).
  mutating func parseGitHubApp(_ type: Token, _ rest: [Token]) -> GitHubAppSpec? {
    let usage =
      "source github-app app-id N installation-id M private-key SECRET [api-url URL] [repositories NAME…] [permissions NAME:read|write…]"
    let keys = [
      "app-id", "installation-id", "private-key", "api-url", "repositories", "permissions",
    ]
    var values: [String: [Token]] = [:]
    var keyTokens: [String: Token] = [:]
    var current: String?
    for t in rest {
      if !t.quoted && keys.contains(t.keyword) {
        guard values[t.keyword] == nil else {
          error(t, "duplicate \(t.keyword) in source github-app; expected it once")
          return nil
        }
        current = t.keyword
        values[t.keyword] = []
        keyTokens[t.keyword] = t
        continue
      }
      guard let key = current else {
        error(t, "unexpected \"\(t.text)\" in source github-app; expected \(usage)")
        return nil
      }
      values[key]!.append(t)
    }
    var ok = true
    for k in keys {
      guard let given = values[k] else {
        if ["app-id", "installation-id", "private-key"].contains(k) {
          error(type, "github-app is missing \(k); expected \(usage)")
          ok = false
        }
        continue
      }
      let single = !["repositories", "permissions"].contains(k)
      if given.isEmpty || (single && given.count != 1) {
        error(
          given.dropFirst().first ?? keyTokens[k]!,
          given.isEmpty
            ? "\(k) is missing its value; expected \(usage)"
            : "\(k) takes one value; expected \(usage)")
        ok = false
      }
    }
    guard ok else { return nil }
    let appID = values["app-id"]![0]
    let installation = values["installation-id"]![0]
    if appID.text.isEmpty || appID.text.contains(where: { $0 == "/" || $0 == " " }) {
      error(appID, "app-id \"\(appID.text)\" is not an app ID; expected e.g. app-id 123456")
      ok = false
    }
    if installation.text.isEmpty || !installation.text.allSatisfy(\.isASCIIDigitCharacter) {
      error(
        installation,
        "installation-id \"\(installation.text)\" is not a number; expected e.g. installation-id 7890123"
      )
      ok = false
    }
    let key = secret(values["private-key"]![0])
    var api = GitHubAppSpec.defaultAPIURL
    if let t = values["api-url"]?.first {
      if let url = secureBaseURL(t, what: "api-url", example: "https://HOST/api/v3") {
        api = url.hasSuffix("/") ? String(url.dropLast()) : url
      } else {
        ok = false
      }
    }
    var permissions: [GitHubAppSpec.Permission] = []
    for t in values["permissions"] ?? [] {
      let parts = t.text.split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count == 2, !parts[0].isEmpty, ["read", "write", "admin"].contains(parts[1])
      else {
        error(
          t,
          "permission \"\(t.text)\" is not NAME:LEVEL; expected e.g. contents:read or issues:write")
        ok = false
        continue
      }
      permissions.append(.init(name: String(parts[0]), level: String(parts[1])))
    }
    let repositories = (values["repositories"] ?? []).map(\.text)
    for (t, name) in zip(values["repositories"] ?? [], repositories) where name.contains("/") {
      error(
        t,
        "repository \"\(name)\" names an owner; expected the name only (the installation's owner is implied)"
      )
      ok = false
    }
    guard ok, let key else { return nil }
    return GitHubAppSpec(
      appID: appID.text, installationID: installation.text, privateKey: key, apiURL: api,
      repositories: repositories, permissions: permissions)
  }
}

extension Character {
  fileprivate var isASCIIDigitCharacter: Bool { isASCII && isNumber }
}
