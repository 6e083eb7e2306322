import CredproxyConfig
import EgressPolicy
import Foundation
import GoogleAuth
import Synchronization

/// What a route needs minted: the cache key plus what the key was made from.
struct TokenRequest: Sendable {
  var key: TokenKey
  var scopes: [String]
  var audience: String
  var credential: MintingCredential
  /// `auth basic USER token`: the token goes out as Basic `USER:token` instead of Bearer.
  var basicUser: String?

  /// The header value that carries `token`.
  func headerValue(_ token: String) -> String {
    guard let user = basicUser else { return "Bearer " + token }
    return "Basic " + Data("\(user):\(token)".utf8).base64EncodedString()
  }

  init(credential: MintingCredential, scopes: [String]) {
    let normalized = credential.source.takesScopes ? Scopes.normalize(scopes) : []
    key = TokenKey(
      credential: credential.name, kind: .accessToken,
      scopesOrAudience: normalized.joined(separator: " "))
    self.scopes = normalized
    audience = ""
    self.credential = credential
  }

  init(credential: MintingCredential, audience: String) {
    key = TokenKey(credential: credential.name, kind: .idToken, scopesOrAudience: audience)
    scopes = []
    self.audience = audience
    self.credential = credential
  }

  /// `credential "default" (ADC: …)`, for error messages.
  var credentialLabel: String {
    let origin = credential.origin
    return origin.isEmpty
      ? "credential \"\(credential.name)\"" : "credential \"\(credential.name)\" (\(origin))"
  }
}

/// Shared by every loop: the token cache and the credentials that fill it. Concurrent requests for
/// one key cause one mint (the cache's single-flight); the mint runs on the loop that asked first.
final class TokenBroker: Sendable {
  enum Acquired {
    case token(MintedToken)
    /// The waiter will be called once the mint in flight finishes.
    case waiting
    case failed(String)
    /// The credential cannot mint at all (unreadable key file, no ADC found).
    case unavailable(String)
  }

  let cache = TokenCache()
  /// The current config's metrics (replaced on reload).
  let metrics = Mutex<Metrics?>(nil)
  /// Every secret value the config resolved (set at start and on reload, keeping the previous
  /// config's too for mints that began under it): never echoed in a mint failure.
  let secrets = Mutex<[String]>([])
  /// How mints send their requests and wait between attempts (tests substitute a fake endpoint).
  let transport: MintTransport

  /// The OIDC issuers' signing keys (`client … { oidc … }`), fetched over the same transport.
  let issuerKeys: IssuerKeys

  init(transport: MintTransport = .live) {
    self.transport = transport
    issuerKeys = IssuerKeys(fetch: transport.fetch)
  }

  /// A mint failure's text as it may be shown: through `ErrorText`, with the config's secrets.
  func sanitized(_ text: String) -> String {
    ErrorText.sanitize(text, secrets: secrets.withLock { $0 })
  }

  static func now() -> Double { Date().timeIntervalSince1970 }

  /// `makeWaiter` is called only when the caller has to wait: a cache hit (the common case)
  /// allocates no closure and takes the cache lock once.
  func acquire(
    _ request: TokenRequest, context: LoopContext, makeWaiter: () -> TokenWaiter
  ) -> Acquired {
    if case .unavailable(let why) = request.credential.source {
      return .unavailable("\(request.credentialLabel): \(sanitized(why))")
    }
    var found = cache.lookup(request.key, now: Self.now(), waiter: nil)
    if case .mustWait(let startMint) = found {
      if startMint { MintOperation(broker: self, request: request, context: context).run() }
      // Register to be woken; the mint may have finished meanwhile, then this is a hit.
      found = cache.lookup(request.key, now: Self.now(), waiter: makeWaiter())
    }
    switch found {
    case .fresh(let token):
      metrics.withLock { $0 }?.tokenCacheHit(credential: request.credential.name)
      return .token(token)
    case .staleServe(let token, let startRefresh):
      metrics.withLock { $0 }?.tokenCacheHit(credential: request.credential.name)
      if startRefresh { MintOperation(broker: self, request: request, context: context).run() }
      return .token(token)
    case .mustWait(let startMint):
      if startMint { MintOperation(broker: self, request: request, context: context).run() }
      return .waiting
    case .backoff(let lastError, let retryAfter):
      return .failed(
        "\(request.credentialLabel): \(lastError) (next attempt in \(Int(retryAfter.rounded(.up))) s)"
      )
    }
  }

  func finish(_ request: TokenRequest, result raw: Result<MintedToken, TokenEndpointError>) {
    // The one place a mint failure enters the cache (and from there the caller's error body,
    // /status and /readyz) and the log: sanitised here.
    let secrets = secrets.withLock { $0 }
    let result = raw.mapError { $0.sanitized(secrets: secrets) }
    switch result {
    case .success(let token):
      metrics.withLock { $0 }?.tokenMinted(credential: request.credential.name)
      Log.info(
        "minted \(token.kind.rawValue) for \(request.key) fingerprint=\(fingerprint(token.value))"
          + " expires_in=\(Int(token.expiresAt - Self.now()))s")
    case .failure(let error):
      metrics.withLock { $0 }?.tokenMintFailed(credential: request.credential.name)
      Log.info("token mint failed for \(request.key): \(error)")
    }
    let wakeup = cache.complete(
      request.key, result: result, now: Self.now(),
      refreshWindow: request.credential.refreshWindowSeconds)
    wakeup.wakeAll()
  }
}
