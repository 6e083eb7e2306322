import CredproxyConfig
import EgressPolicy
import Foundation
import GoogleAuth
import Synchronization

/// The signing keys of the OIDC issuers that `client … { oidc … }` blocks trust, shared by every
/// loop. Keys come from the issuer's discovery document (`/.well-known/openid-configuration`,
/// then its `jwks_uri`), fetched on first use on the asking loop's curl multi (never blocking a
/// loop), cached, and fetched again when a token names a `kid` the cache lacks (key rotation), at
/// most once per `refreshInterval`. Requests that arrive while a fetch runs wait for it.
final class IssuerKeys: Sendable {
  enum Verdict {
    /// Signature, time and claims check out: `claims` are the configured ones that matched.
    case client(String, claims: [String])
    case rejected(String)
    /// The issuer's keys could not be fetched: not the caller's fault (503).
    case unavailable(String)
    /// A fetch is under way; the waiter is called (on any thread) when it ends: verify again.
    case waiting
  }

  typealias Waiter = @Sendable () -> Void

  private struct Entry {
    var keys: [VerificationKey] = []
    var loaded = false
    /// When the last fetch ended (success or failure); 0: never.
    var fetchedAt = 0.0
    var fetching = false
    var lastFailure: String?
    var waiters: [Waiter] = []
    /// Counts the key sets loaded: a token verified under an older set is verified again.
    var generation = 0
  }

  private let entries = Mutex<[String: Entry]>([:])

  /// An issuer's keys as loaded by one fetch, and which fetch (`Entry.generation`).
  private struct KeySet {
    let keys: [VerificationKey]
    let generation: Int
  }
  /// A `kid` the cache lacks triggers a fetch at most this often per issuer (so unknown-`kid`
  /// tokens cannot make us hammer the issuer); also how long a failed fetch is remembered.
  static let refreshInterval = 5.0
  /// Keys older than this are fetched again in the background while still used.
  static let maxAge = 3600.0
  private let fetch: MintTransport.Fetch

  init(fetch: @escaping MintTransport.Fetch) {
    self.fetch = fetch
  }

  /// Checks `token` against `clients`' OIDC rules. `mayFetch` false: a verification after a
  /// fetch ended, which must decide with what is cached.
  func verify(
    _ token: String, only: String? = nil, clients: ClientIdentifier, context: LoopContext,
    mayFetch: Bool = true, waiter: @escaping Waiter
  ) -> Verdict {
    let now = TokenBroker.now()
    let digest = VerifiedTokens.digest(token)
    if let known = context.verifiedTokens.verified(digest, now: now, keys: generation(of:)) {
      guard clients.oidcIssuers.contains(known.issuer) else {
        return .rejected("OIDC proxy token's issuer is not trusted by any client")
      }
      return match(known.token, known.issuer, only, clients, now)
    }
    let signed: SignedToken
    do { signed = try SignedToken.parse(token) } catch {
      switch error {
      case .malformed: return .rejected("malformed OIDC proxy token")
      case .algorithm(let alg):
        return .rejected(
          "OIDC proxy token signed with \(Router.quoted(alg, limit: 64)); expected RS256 or ES256")
      }
    }
    guard let issuer = signed.claims["iss"] as? String, clients.oidcIssuers.contains(issuer) else {
      return .rejected("OIDC proxy token's issuer is not trusted by any client")
    }
    enum Next {
      case check(KeySet)
      /// `alsoCheck`: keys merely old are refreshed in the background; this token is checked
      /// with them now.
      case startFetch(alsoCheck: KeySet?)
      case wait
      case refuse(Verdict)
    }
    let next: Next = entries.withLock { all in
      var entry = all[issuer] ?? Entry()
      defer { all[issuer] = entry }
      if entry.loaded && signed.hasCandidate(in: entry.keys) {
        if now - entry.fetchedAt > Self.maxAge && !entry.fetching {
          entry.fetching = true
          return .startFetch(alsoCheck: KeySet(keys: entry.keys, generation: entry.generation))
        }
        return .check(KeySet(keys: entry.keys, generation: entry.generation))
      }
      if entry.fetching {
        entry.waiters.append(waiter)
        return .wait
      }
      let recent = entry.fetchedAt > 0 && now - entry.fetchedAt < Self.refreshInterval
      if !mayFetch || recent {
        if !entry.loaded, let failure = entry.lastFailure {
          return .refuse(.unavailable("issuer \(issuer): \(failure)"))
        }
        return .refuse(
          .rejected(
            signed.kid == nil
              ? "OIDC proxy token has no kid, and the issuer publishes several keys of its type"
              : "OIDC proxy token names a key the issuer does not publish (kid unknown)"))
      }
      entry.fetching = true
      entry.waiters.append(waiter)
      return .startFetch(alsoCheck: nil)
    }
    switch next {
    case .refuse(let verdict):
      return verdict
    case .wait:
      return .waiting
    case .startFetch(let alsoCheck):
      startFetch(issuer, context: context)
      guard let keys = alsoCheck else { return .waiting }
      return check(signed, keys, issuer, only, clients, now, context, digest)
    case .check(let keys):
      return check(signed, keys, issuer, only, clients, now, context, digest)
    }
  }

  private func check(
    _ signed: SignedToken, _ keys: KeySet, _ issuer: String, _ only: String?,
    _ clients: ClientIdentifier, _ now: Double, _ context: LoopContext, _ digest: [UInt8]
  ) -> Verdict {
    guard signed.verified(by: keys.keys) else {
      return .rejected("OIDC proxy token's signature does not verify with the issuer's keys")
    }
    context.verifiedTokens.remember(
      digest, signed, issuer: issuer, keys: keys.generation,
      exp: ClientIdentifier.number(signed.claims["exp"]), now: now)
    return match(signed, issuer, only, clients, now)
  }

  /// Which of `issuer`'s key sets is loaded now (0: none yet).
  private func generation(of issuer: String) -> Int {
    entries.withLock { $0[issuer]?.generation ?? 0 }
  }

  /// Time, audience and claims, against the config of this request.
  private func match(
    _ signed: SignedToken, _ issuer: String, _ only: String?, _ clients: ClientIdentifier,
    _ now: Double
  ) -> Verdict {
    switch clients.matchOIDC(issuer: issuer, claims: signed.claims, now: now, only: only) {
    case .client(let name, let claims): return .client(name, claims: claims)
    case .rejected(let why): return .rejected(why)
    }
  }

  /// Discovery, then the JWKS; both over https (or http to loopback), answers up to 1 MiB.
  private func startFetch(_ issuer: String, context: LoopContext) {
    let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
    let discovery = base + "/.well-known/openid-configuration"
    get(discovery, context) { [self] result in
      switch result {
      case .failure(let why):
        finish(issuer, .failure("discovery document \(discovery): \(why)"))
      case .success(let body):
        guard let doc = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
          let jwksURI = doc["jwks_uri"] as? String
        else {
          finish(issuer, .failure("discovery document \(discovery) has no jwks_uri"))
          return
        }
        // OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        guard doc["issuer"] as? String == issuer else {
          finish(issuer, .failure("discovery document \(discovery) names another issuer"))
          return
        }
        if let problem = MintingCredential.insecureEndpoint(jwksURI, "jwks_uri") {
          finish(issuer, .failure(problem))
          return
        }
        get(jwksURI, context) { [self] result in
          switch result {
          case .failure(let why): finish(issuer, .failure("JWKS \(jwksURI): \(why)"))
          case .success(let body):
            let keys = VerificationKey.parseJWKS(body)
            finish(
              issuer,
              keys.isEmpty
                ? .failure("JWKS \(jwksURI) has no usable RS256 or ES256 key") : .success(keys))
          }
        }
      }
    }
  }

  private func get(
    _ url: String, _ context: LoopContext, _ done: @escaping (Result<[UInt8], Failure>) -> Void
  ) {
    let spec = HTTPRequestSpec(method: "GET", url: url, headers: [("Accept", "application/json")])
    fetch(spec, 10_000, context) { result in
      switch result {
      case .success(let response) where response.status == 200:
        done(.success(response.body))
      case .success(let response):
        done(.failure(Failure("HTTP \(response.status)")))
      case .failure(let error):
        done(.failure(Failure("\(error.code): \(error.message)")))
      }
    }
  }

  private struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
  }

  private enum Outcome {
    case success([VerificationKey])
    case failure(String)
  }

  private func finish(_ issuer: String, _ outcome: Outcome) {
    let waiters: [Waiter] = entries.withLock { all in
      var entry = all[issuer] ?? Entry()
      entry.fetching = false
      entry.fetchedAt = TokenBroker.now()
      switch outcome {
      case .success(let keys):
        entry.keys = keys
        entry.loaded = true
        entry.generation += 1
        entry.lastFailure = nil
        Log.info("OIDC issuer \(issuer): \(keys.count) signing key(s) loaded")
      case .failure(let why):
        // Keys already loaded stay in use through an outage.
        entry.lastFailure = why
        Log.info("OIDC issuer \(issuer): fetching keys failed: \(why)")
      }
      let w = entry.waiters
      entry.waiters = []
      all[issuer] = entry
      return w
    }
    for w in waiters { w() }
  }
}
