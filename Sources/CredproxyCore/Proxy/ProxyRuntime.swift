import CredproxyConfig
import EgressPolicy
import Foundation
import HTTP1
import Synchronization

/// What a route adds to the request, decided once at load time.
enum AuthInjection: Sendable {
  case none
  /// A static credential: header name and the full value (`Bearer …`, `Basic …`, a key).
  case header(name: String, value: String)
  /// The route's secret could not be read; requests get 503 naming the source, never a value.
  case unavailable(String)
  /// A Google (or OAuth 2.0 client-credentials) token minted by `credential`, sent as
  /// `header: Bearer <token>`.
  case minted(credential: MintingCredential, kind: MintedKind, header: String)
}

enum MintedKind: Sendable {
  /// The request (cache key, normalised scopes) is built once at load: it is the same for every
  /// request on the route, and normalising scopes per request showed in profiles.
  case oauth2(TokenRequest)
  case oidc(audience: OIDCAudience)
}

/// A route as requests use it: decided once per load, shared (a class: a request holds a
/// reference, not a copy of the route's many fields).
final class PreparedRoute: Sendable {
  let route: Route
  let auth: AuthInjection
  let upstream: RouteUpstream
  /// A static credential as curl's header line, and its name lowercased (the caller's own
  /// header of that name is dropped): built once, not per request.
  let credentialLine: String?
  let injectedName: String?

  init(route: Route, auth: AuthInjection, upstream: RouteUpstream) {
    self.route = route
    self.auth = auth
    self.upstream = upstream
    if case .header(let name, let value) = auth {
      credentialLine = HeaderPolicy.curlLine(name, value)
      injectedName = name.lowercased()
    } else {
      credentialLine = nil
      injectedName = nil
    }
  }
}

/// The immutable, shared state every loop reads: the config, the routing table with secrets
/// resolved, TLS trust settings and the access log. Loaded once per config (re)load.
final class ProxyRuntime: Sendable {
  /// Which load this is (1, 2, … per process): caches keyed by route use it, so a reload never
  /// reuses what an older config decided.
  let generation = ProxyRuntime.generations.add(1, ordering: .relaxed).newValue
  private static let generations = Atomic<Int>(0)
  let config: ProxyConfig
  let router: Router
  let routes: [PreparedRoute]
  let accessLog: AccessLog
  let caFile: String?
  let caPath: String?
  let limits: HTTPLimits

  let credentials: [String: MintingCredential]
  /// Who is calling (Proxy-Authorization or source address).
  let clients: ClientIdentifier
  /// Views onto process-wide state (`previous`'s, on a reload): rate buckets, in-flight counts
  /// and metrics live for the whole process.
  let rateLimiter: RateLimiter
  let concurrency: ConcurrencyLimiter
  let ssrf = SSRFPolicy()
  let audit: AuditLog?
  let metrics: Metrics
  /// The status dashboard's last 15 minutes of traffic (process-wide, like `metrics`).
  let live: LiveStats
  /// Used for requests that no route matches but report mode lets through: no credential.
  let reportPassthrough: PreparedRoute
  /// Every secret value this config resolved: route secrets, client passwords and tokens, the
  /// admin token, and the credentials' refresh tokens, client secrets and private keys. Only for
  /// redacting untrusted text (`ErrorText`); never shown.
  let secretValues: [String]
  /// Leaves for `intercept` routes; nil when no route intercepts (or no CA could be loaded).
  let interceptCertificates: InterceptCertificates?

  /// - Parameter previous: the runtime this one replaces (reload): its metrics and limiters' state
  ///   carry over.
  init(config: ProxyConfig, environment: [String: String], previous: ProxyRuntime? = nil)
    throws(SocketError)
  {
    self.config = config
    clients = ClientIdentifier(config: config, environment: environment)
    let names = config.routes.map(\.name)
    if let previous {
      concurrency = previous.concurrency.reconfigured(config: config)
      metrics = previous.metrics.reconfigured(routeNames: names)
      live = previous.live.reconfigured(routeNames: names)
      rateLimiter = previous.rateLimiter.reconfigured(routeKeys: Metrics.routeLabels(names))
    } else {
      concurrency = ConcurrencyLimiter(config: config)
      metrics = Metrics(routeNames: names)
      live = LiveStats(
        routeNames: names, shards: max(4, ProcessInfo.processInfo.activeProcessorCount))
      rateLimiter = RateLimiter(routeKeys: Metrics.routeLabels(names))
    }
    audit = try AuditLog(target: config.auditLog, logQueries: config.logQueries)
    let generation = self.generation
    let passthrough = Route(name: "(no route: report mode)", patterns: [], line: 0)
    reportPassthrough = PreparedRoute(
      route: passthrough, auth: .none,
      upstream: RouteUpstream(
        route: passthrough, key: .init(generation: generation, index: -1),
        defaultConnectTimeoutMs: config.connectTimeoutMs))
    router = Router(routes: config.routes)
    let credentials = MintingCredential.loadAll(config: config, environment: environment)
    let fileProblems = CredentialFileCheck.problems(config: config, credentials)
    if !fileProblems.isEmpty {
      throw SocketError(message: fileProblems.joined(separator: "\n"))
    }
    self.credentials = credentials
    routes = config.routes.enumerated().map { i, route in
      PreparedRoute(
        route: route, auth: Self.prepare(route, environment, credentials),
        upstream: RouteUpstream(
          route: route, key: .init(generation: generation, index: i),
          defaultConnectTimeoutMs: config.connectTimeoutMs))
    }
    accessLog = try AccessLog(target: config.accessLog, format: config.logFormat)
    // `ca-file` adds trust: curl reads it as CAINFO while the system store stays as CAPATH.
    if let file = config.caFile ?? environment["SSL_CERT_FILE"] {
      caFile = file
      caPath = FileManager.default.fileExists(atPath: "/etc/ssl/certs") ? "/etc/ssl/certs" : nil
    } else {
      caFile = nil
      caPath = nil
    }
    limits = HTTPLimits()
    var secrets = clients.secretValues
    for route in config.routes {
      switch route.auth {
      case .bearer(let secret), .header(_, let secret), .basic(_, let secret):
        if let value = try? secret.resolve(environment: environment) { secrets.append(value) }
      default:
        break
      }
    }
    if let value = try? config.admin?.token?.resolve(environment: environment) {
      secrets.append(value)
    }
    if let value = try? config.limitsStore?.password?.resolve(environment: environment) {
      secrets.append(value)
    }
    for credential in credentials.values { secrets += Self.secrets(of: credential.source) }
    secretValues = secrets
    // The local CA for intercept routes: kept across a reload while its files hold the same CA
    // (its leaf cache with it); a CA that cannot be loaded stops the start or the reload.
    if let files = LocalCAInterception.files(for: config) {
      do {
        interceptCertificates = try LocalCAInterception.load(
          certPath: files.cert, keyPath: files.key,
          keeping: previous?.interceptCertificates as? LocalCAInterception)
      } catch {
        throw SocketError(
          message:
            "intercept routes need the local CA: \(error.description) (create one with `credproxy ca init`, or set ca-cert and ca-key)"
        )
      }
    } else {
      interceptCertificates = nil
    }
  }

  static func secrets(of source: MintingSource) -> [String] {
    switch source {
    case .serviceAccount(let signer):
      return [signer.account.privateKeyPEM]
    case .authorizedUser(let user):
      return [user.refreshToken, user.clientSecret]
    case .clientCredentials(_, _, let secret, _):
      return [secret]
    case .impersonate(_, _, _, let source, _):
      return secrets(of: source.source)
    case .githubApp(let app):
      return [app.privateKeyPEM]
    case .stsExchange(let account, _):
      // The client secret and a url source's header values (e.g. a CI job's request token).
      var values = account.clientSecret.map { [$0] } ?? []
      if case .url(_, let headers, _) = account.source { values += headers.map(\.value) }
      return values
    case .metadata, .unavailable, .program:
      return []
    }
  }

  static func prepare(
    _ route: Route, _ env: [String: String], _ credentials: [String: MintingCredential]
  ) -> AuthInjection {
    do {
      switch route.auth {
      case .none:
        return .none
      case .bearer(let secret):
        return .header(
          name: "Authorization", value: "Bearer " + (try secret.resolve(environment: env)))
      case .header(let name, let secret):
        return .header(name: name, value: try secret.resolve(environment: env))
      case .basic(let user, let secret):
        let pair = Data("\(user):\(try secret.resolve(environment: env))".utf8)
        return .header(name: "Authorization", value: "Basic " + pair.base64EncodedString())
      case .oauth2(let scopes):
        guard let credential = credentials[route.credentials] else {
          return .unavailable("credential \"\(route.credentials)\" is not defined")
        }
        return .minted(
          credential: credential,
          kind: .oauth2(TokenRequest(credential: credential, scopes: scopes)),
          header: route.injectedHeaderName ?? "Authorization")
      case .basicToken(let user):
        guard let credential = credentials[route.credentials] else {
          return .unavailable("credential \"\(route.credentials)\" is not defined")
        }
        // The same token, and cache entry, as `auth token` on this credential.
        var request = TokenRequest(credential: credential, scopes: AuthSpec.defaultScopes)
        request.basicUser = user
        return .minted(
          credential: credential, kind: .oauth2(request),
          header: route.injectedHeaderName ?? "Authorization")
      case .oidc(let audience):
        guard let credential = credentials[route.credentials] else {
          return .unavailable("credential \"\(route.credentials)\" is not defined")
        }
        return .minted(
          credential: credential, kind: .oidc(audience: audience),
          header: route.injectedHeaderName ?? "Authorization")
      case .token:
        guard let credential = credentials[route.credentials] else {
          return .unavailable("credential \"\(route.credentials)\" is not defined")
        }
        // A Google source's token is its cloud-platform access token (the same cache entry as
        // `auth OAuth2`); a program's scopes are ignored (`takesScopes`).
        return .minted(
          credential: credential,
          kind: .oauth2(TokenRequest(credential: credential, scopes: AuthSpec.defaultScopes)),
          header: route.injectedHeaderName ?? "Authorization")
      }
    } catch {
      return .unavailable("\(error)")
    }
  }
}
