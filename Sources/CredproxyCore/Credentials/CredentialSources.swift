import CredproxyConfig
import Foundation
import GoogleAuth

/// A credential as it can actually mint: key material loaded, files parsed, ADC searched.
/// Built once per config load, so a request never reads a file.
indirect enum MintingSource: Sendable {
  case serviceAccount(ServiceAccountSigner)
  case authorizedUser(AuthorizedUser)
  /// `probing`: reached by ADC's fall-through without GCE_METADATA_HOST; if the server is not
  /// there we are not on Google Cloud, so a connection failure is final rather than retried.
  case metadata(baseURL: String, probing: Bool)
  /// IAM Credentials on behalf of `target`, paid for with `source`'s cloud-platform token;
  /// access tokens asked for `lifetimeSeconds` (an `external_account` file's
  /// `token_lifetime_seconds`; else 3600).
  case impersonate(
    target: String, delegates: [String], iamEndpoint: String, source: MintingCredential,
    lifetimeSeconds: Int = 3600)
  case clientCredentials(tokenURL: String, clientID: String, clientSecret: String, scopes: [String])
  /// Workload identity federation: a subject token (re-read at every mint) exchanged at STS.
  /// `environment`: what an executable subject-token source runs with.
  case stsExchange(ExternalAccount, environment: [String: String])
  /// A host program that prints one token (`source exec`); `path` already located.
  case program(path: String, arguments: [String], timeoutMs: Int, environment: [String: String])
  case githubApp(GitHubAppInstallation)
  /// Cannot mint; every request gets 503 with this explanation.
  case unavailable(String)
}

extension MintingSource {
  /// Whether the token depends on the scopes asked for. A program prints one token, and a GitHub
  /// App's installation token is narrowed by its block: every route shares one cache entry,
  /// whatever it would have asked.
  var takesScopes: Bool {
    switch self {
    case .program, .githubApp: return false
    default: return true
    }
  }
}

/// Config errors that only the credential files reveal: `auth OIDC` on an `external_account`
/// without `service_account_impersonation_url` (STS grants access tokens only). `serve` refuses
/// to start (and a reload is refused); `check` reports them.
public enum CredentialFileCheck {
  public static func problems(config: ProxyConfig, environment: [String: String]) -> [String] {
    problems(config: config, MintingCredential.loadAll(config: config, environment: environment))
  }

  static func problems(config: ProxyConfig, _ credentials: [String: MintingCredential]) -> [String]
  {
    var out: [String] = []
    for (index, route) in config.routes.enumerated() {
      guard case .oidc = route.auth, !route.deny,
        let credential = credentials[route.credentials],
        case .stsExchange(let account, _) = credential.source
      else { continue }
      out.append(
        "\(config.sourcePath):\(route.line): auth OIDC on route #\(index + 1) uses credentials \"\(route.credentials)\" (\(credential.origin)), an external_account without service_account_impersonation_url: workload identity federation alone gives access tokens, not ID tokens (\(account.audience)); expected service_account_impersonation_url in the file, or auth OAuth2"
      )
    }
    return out
  }
}

/// A named credential ready to mint, plus how it was found (shown in errors, never secret).
final class MintingCredential: Sendable {
  let name: String
  let source: MintingSource
  /// nil: the default (5 min, or a quarter of a short lifetime).
  let refreshWindowSeconds: Double?
  /// For ADC: the search that led here, to explain a failure.
  let origin: String

  init(name: String, source: MintingSource, refreshWindowSeconds: Double?, origin: String) {
    self.name = name
    self.source = source
    self.refreshWindowSeconds = refreshWindowSeconds
    self.origin = origin
  }

  /// Builds every credential the config defines or its routes use (`default` is ADC unless given).
  static func loadAll(config: ProxyConfig, environment: [String: String]) -> [String:
    MintingCredential]
  {
    var built: [String: MintingCredential] = [:]
    var names = Set(config.credentials.map(\.name))
    for route in config.routes where route.auth.usesGoogleCredentials {
      names.insert(route.credentials)
    }
    func build(_ name: String, depth: Int) -> MintingCredential {
      if let done = built[name] { return done }
      let spec = config.credential(named: name)
      let window = spec.flatMap { $0.refreshWindowSet ? Double($0.refreshWindowMs) / 1000 : nil }
      let made: MintingCredential
      if let spec, depth < 8 {
        let (source, origin) = resolve(spec, environment: environment) {
          build($0, depth: depth + 1)
        }
        made = MintingCredential(
          name: name, source: source, refreshWindowSeconds: window, origin: origin)
      } else {
        made = MintingCredential(
          name: name, source: .unavailable("credential \"\(name)\" is not defined"),
          refreshWindowSeconds: window, origin: "")
      }
      built[name] = made
      return made
    }
    for name in names { _ = build(name, depth: 0) }
    return built
  }

  private static func resolve(
    _ spec: CredentialSpec, environment: [String: String],
    named: (String) -> MintingCredential
  ) -> (MintingSource, String) {
    let iam = spec.iamEndpoint ?? CredentialSpec.defaultIAMEndpoint
    switch spec.source {
    case .keyFile(let path):
      return (
        fromFile(path, name: spec.name, iamEndpoint: iam, environment: environment),
        "key-file \(path)"
      )
    case .refreshToken(let path):
      return (
        fromFile(path, name: spec.name, iamEndpoint: iam, environment: environment),
        "refresh-token \(path)"
      )
    case .metadata:
      let base = MetadataServer.baseURL(environment: environment)
      return (.metadata(baseURL: base, probing: false), "metadata server \(base)")
    case .impersonate(let email, let via, let delegates):
      let source = named(via ?? CredentialSpec.defaultName)
      return (
        .impersonate(target: email, delegates: delegates, iamEndpoint: iam, source: source),
        "impersonating \(email) via \(source.name)"
      )
    case .clientCredentials(let url, let id, let secret, let scopes):
      do {
        let value = try secret.resolve(environment: environment)
        return (
          .clientCredentials(tokenURL: url, clientID: id, clientSecret: value, scopes: scopes),
          "client-credentials \(url)"
        )
      } catch {
        return (.unavailable("client secret: \(error)"), "client-credentials \(url)")
      }
    case .adc:
      return adc(name: spec.name, environment: environment, iamEndpoint: iam)
    case .exec(let command):
      guard let path = ProgramRunner.locate(command.program, searchPath: environment["PATH"])
      else {
        return (.unavailable(ProgramRunner.notRunnable(command.program)), "")
      }
      return (
        .program(
          path: path, arguments: command.arguments, timeoutMs: command.timeoutMs,
          environment: ProgramRunner.smallEnvironment(from: environment)),
        "program \(path)"
      )
    case .githubApp(let app):
      let origin = "github-app \(app.appID) installation \(app.installationID) at \(app.apiURL)"
      do {
        let pem = try app.privateKey.resolve(environment: environment, multiline: true)
        do {
          let signer = try RSASigner(pem: pem)
          return (
            .githubApp(GitHubAppInstallation(spec: app, signer: signer, privateKeyPEM: pem)), origin
          )
        } catch {
          return (.unavailable("private key \(app.privateKey): \(error)"), origin)
        }
      } catch {
        return (.unavailable("private key: \(error)"), origin)
      }
    }
  }

  /// Application Default Credentials in Google's order; the trail explains what was tried.
  static func adc(name: String, environment: [String: String], iamEndpoint: String)
    -> (MintingSource, String)
  {
    var trail: [String] = []
    for candidate in ApplicationDefaultCredentials.searchOrder(environment: environment) {
      switch candidate {
      case .explicitFile(let path):
        // Set but unusable is an error, never a fall-through (as Google's libraries do).
        return (
          fromFile(path, name: name, iamEndpoint: iamEndpoint, environment: environment),
          "ADC: GOOGLE_APPLICATION_CREDENTIALS=\(path)"
        )
      case .wellKnownFile(let path):
        if FileManager.default.fileExists(atPath: path) {
          return (
            fromFile(path, name: name, iamEndpoint: iamEndpoint, environment: environment),
            "ADC: \(path)"
          )
        }
        trail.append("GOOGLE_APPLICATION_CREDENTIALS is not set; \(path) does not exist")
      case .metadataServer(let base, let pingRequired):
        trail.append("metadata server \(base)")
        return (
          .metadata(baseURL: base, probing: pingRequired),
          "ADC searched: " + trail.joined(separator: "; ")
        )
      }
    }
    return (.unavailable("no Application Default Credentials found"), trail.joined(separator: "; "))
  }

  static func fromFile(
    _ path: String, name: String, iamEndpoint: String, environment: [String: String]
  ) -> MintingSource {
    guard let data = FileManager.default.contents(atPath: path) else {
      return .unavailable("cannot read credentials file \(path)")
    }
    do {
      return try fromParsed(
        CredentialFile.parse(data: data, path: path), name: name, iamEndpoint: iamEndpoint,
        environment: environment)
    } catch {
      return .unavailable("\(error)")
    }
  }

  /// Credentials (assertions, refresh tokens, bearer tokens) only travel over HTTPS, except to a
  /// loopback emulator. Returns why `url` is refused, or nil.
  static func insecureEndpoint(_ url: String, _ field: String) -> String? {
    if let target = TargetURL(url), target.isSafeForCredentials { return nil }
    return
      "\(field) \(url) must be an https:// URL (plain http only to loopback): credentials would cross the network in clear"
  }

  private static func fromParsed(
    _ file: CredentialFile, name: String, iamEndpoint: String, environment: [String: String]
  ) throws -> MintingSource {
    switch file {
    case .serviceAccount(let key):
      if let problem = insecureEndpoint(key.tokenURI, "token_uri") { return .unavailable(problem) }
      return .serviceAccount(try ServiceAccountSigner(key))
    case .authorizedUser(let user):
      if let problem = insecureEndpoint(user.tokenURI, "token_uri") { return .unavailable(problem) }
      return .authorizedUser(user)
    case .impersonatedServiceAccount(let imp):
      if let problem = insecureEndpoint(imp.impersonationURL, "service_account_impersonation_url") {
        return .unavailable(problem)
      }
      let inner = MintingCredential(
        name: "\(name) (source)",
        source: try fromParsed(
          imp.sourceCredentials, name: "\(name) (source)", iamEndpoint: iamEndpoint,
          environment: environment),
        refreshWindowSeconds: nil, origin: "")
      return .impersonate(
        target: imp.targetEmail, delegates: imp.delegates,
        iamEndpoint: imp.iamEndpoint ?? iamEndpoint, source: inner)
    case .externalAccount(let account):
      return externalAccount(
        account, name: name, iamEndpoint: iamEndpoint, environment: environment)
    }
  }

  /// STS alone, or STS paying for impersonation (the STS token is the impersonation's source
  /// token, cached under its own name like any source credential).
  private static func externalAccount(
    _ account: ExternalAccount, name: String, iamEndpoint: String, environment: [String: String]
  ) -> MintingSource {
    if let problem = insecureEndpoint(account.tokenURL, "token_url") {
      return .unavailable(problem)
    }
    var runEnvironment: [String: String] = [:]
    switch account.source {
    case .url(let url, _, _):
      if let problem = insecureSubjectURL(url) { return .unavailable(problem) }
    case .executable:
      guard environment[ExternalAccount.allowExecutablesVariable] == "1" else {
        return .unavailable(
          "credential_source.executable needs \(ExternalAccount.allowExecutablesVariable)=1 in credproxy's environment before it runs a program (as Google's libraries do)"
        )
      }
      runEnvironment = ProgramRunner.smallEnvironment(from: environment)
        .merging(account.executableEnvironment) { $1 }
    case .file:
      break
    }
    let sts = MintingSource.stsExchange(account, environment: runEnvironment)
    guard let url = account.impersonationURL, let target = account.impersonationTarget else {
      return sts
    }
    if let problem = insecureEndpoint(url, "service_account_impersonation_url") {
      return .unavailable(problem)
    }
    let inner = MintingCredential(
      name: "\(name) (STS)", source: sts, refreshWindowSeconds: nil, origin: account.description)
    return .impersonate(
      target: target, delegates: [], iamEndpoint: account.iamEndpoint ?? iamEndpoint, source: inner,
      lifetimeSeconds: account.tokenLifetimeSeconds ?? 3600)
  }

  /// A subject-token URL may carry a bearer in its headers (GitHub Actions' request token): https,
  /// or plain http only to loopback or the link-local metadata address (Azure's IMDS).
  static func insecureSubjectURL(_ url: String) -> String? {
    guard let target = TargetURL(url) else {
      return "credential_source.url \(url) is not an http(s) URL"
    }
    if target.isSafeForCredentials || (target.scheme == "http" && target.host == "169.254.169.254")
    {
      return nil
    }
    return
      "credential_source.url \(url) must be https:// (plain http only to loopback or 169.254.169.254)"
  }
}
