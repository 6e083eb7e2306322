import Foundation
import Glibc
import GoogleAuth
import Wire

/// How a mint reaches its token endpoint and waits between attempts: in production a
/// `FetchTransfer` on the loop's curl multi and the loop's tick timer. Tests pass a fake endpoint
/// and a fast scheduler to `TokenBroker.init`.
struct MintTransport: Sendable {
  typealias Fetch =
    @Sendable (
      _ spec: HTTPRequestSpec, _ timeoutMs: Int, _ context: LoopContext,
      _ completion: @escaping (Result<FetchTransfer.Response, UpstreamError>) -> Void
    ) -> Void
  typealias Schedule =
    @Sendable (
      _ context: LoopContext, _ afterMs: Int, _ work: @escaping () -> Void
    ) -> Void

  var fetch: Fetch
  var schedule: Schedule

  static let live = MintTransport(
    fetch: { spec, timeoutMs, context, completion in
      FetchTransfer.start(
        method: spec.method, url: spec.url, headers: spec.headers, body: spec.body,
        timeoutMs: timeoutMs, context: context, completion: completion)
    },
    schedule: { context, afterMs, work in context.schedule(afterMs: afterMs, work) })
}

/// One mint for one cache key, run on the loop that asked first: build the request for the
/// credential's source, send it with libcurl, parse the answer, retry the way google-auth does
/// (3 attempts, 1 s then 2 s, ±10 % jitter, on 408/429/5xx and transport errors), then hand the
/// result to the broker, which stores it and wakes every waiter.
final class MintOperation {
  private let broker: TokenBroker
  private let request: TokenRequest
  private unowned let context: LoopContext
  private var attempt = 0
  private static let maxAttempts = 3

  init(broker: TokenBroker, request: TokenRequest, context: LoopContext) {
    self.broker = broker
    self.request = request
    self.context = context
  }

  func run() {
    mint(with: request.credential.source) { [self] result in
      if case .failure(let error) = result, error.retryable, attempt + 1 < Self.maxAttempts {
        attempt += 1
        let base = 1000.0 * pow(2.0, Double(attempt - 1))
        let jitter = base * Double.random(in: -0.1...0.1)
        broker.transport.schedule(context, Int(base + jitter)) { [self] in run() }
        return
      }
      broker.finish(request, result: result)
    }
  }

  private typealias Completion = (Result<MintedToken, TokenEndpointError>) -> Void

  private func mint(with source: MintingSource, _ done: @escaping Completion) {
    let now = TokenBroker.now()
    let idToken = request.key.kind == .idToken
    switch source {
    case .unavailable(let why):
      done(.failure(.local(why)))

    case .serviceAccount(let signer):
      let assertion: String
      do {
        // Backdated 10 s, as golang/oauth2 does, so a slightly fast token server accepts it.
        assertion =
          idToken
          ? try JWTAssertion.idToken(key: signer, targetAudience: request.audience, now: now - 10)
          : try JWTAssertion.accessToken(key: signer, scopes: request.scopes, now: now - 10)
      } catch {
        done(.failure(.local("signing the assertion failed: \(error)")))
        return
      }
      let spec = TokenRequests.jwtBearerGrant(
        tokenURI: signer.account.tokenURI, assertion: assertion)
      send(
        spec, timeoutMs: 10_000, source: "token endpoint \(signer.account.tokenURI)",
        secrets: [assertion], done
      ) { response in
        idToken
          ? TokenResponses.idToken(status: response.status, body: response.body)
          : TokenResponses.accessToken(
            status: response.status, body: response.body, requestTime: now)
      }

    case .authorizedUser(let user):
      guard !idToken else {
        done(.failure(.local("a refresh token cannot mint ID tokens for an arbitrary audience")))
        return
      }
      let spec = TokenRequests.refreshTokenGrant(user, scopes: request.scopes)
      send(spec, timeoutMs: 10_000, source: "token endpoint \(user.tokenURI)", done) { response in
        TokenResponses.accessToken(status: response.status, body: response.body, requestTime: now)
      }

    case .metadata(let base, let probing):
      let spec =
        idToken
        ? TokenRequests.metadataIDToken(base: base, audience: request.audience)
        : TokenRequests.metadataAccessToken(base: base, scopes: request.scopes)
      // google-auth gives the metadata server 3 s per request.
      let finish: Completion = { result in
        if probing, case .failure(var error) = result, error.status == 0 {
          error.retryable = false
          done(.failure(error))
        } else {
          done(result)
        }
      }
      send(spec, timeoutMs: 3_000, source: "metadata server \(base)", finish) { response in
        idToken
          ? TokenResponses.metadataIDToken(
            status: response.status, headers: response.headers, body: response.body)
          : TokenResponses.metadataAccessToken(
            status: response.status, headers: response.headers, body: response.body,
            requestTime: now)
      }

    case .clientCredentials(let url, let id, let secret, let configured):
      guard !idToken else {
        done(.failure(.local("the client-credentials grant cannot mint ID tokens")))
        return
      }
      let scopes = configured.isEmpty ? request.scopes : configured
      let spec = TokenRequests.clientCredentialsGrant(
        tokenURI: url, clientID: id, clientSecret: secret, scopes: scopes)
      send(spec, timeoutMs: 10_000, source: "token endpoint \(url)", done) { response in
        TokenResponses.accessToken(status: response.status, body: response.body, requestTime: now)
      }

    case .stsExchange(let account, let environment):
      guard !idToken else {
        done(
          .failure(
            .local(
              "an external account without service_account_impersonation_url gets access tokens only from STS"
            )))
        return
      }
      SubjectTokenSource.fetch(
        account, environment: environment, transport: broker.transport, context: context
      ) { [self] subject in
        switch subject {
        case .failure(let error):
          done(.failure(error))
        case .success(let subjectToken):
          let spec = TokenRequests.stsExchange(
            account, subjectToken: subjectToken, scopes: request.scopes)
          send(
            spec, timeoutMs: 10_000, source: "STS \(account.tokenURL)", secrets: [subjectToken],
            done
          ) { response in
            TokenResponses.accessToken(
              status: response.status, body: response.body, requestTime: now)
          }
        }
      }

    case .program(let path, let arguments, let timeoutMs, let environment):
      guard !idToken else {
        done(.failure(.local("a program's token is not an ID token for an arbitrary audience")))
        return
      }
      ProgramRunner.start(
        path: path, arguments: arguments, environment: environment, timeoutMs: timeoutMs,
        loop: context.loop
      ) { outcome in
        done(Self.programToken(outcome, path: path, now: now))
      }

    case .githubApp(let app):
      guard !idToken else {
        done(.failure(.local("a GitHub App mints installation tokens, not ID tokens")))
        return
      }
      let jwt: String
      do { jwt = try app.appJWT(now: now) } catch {
        done(.failure(.local("signing the app JWT failed: \(error)")))
        return
      }
      let source = "GitHub API \(app.tokenURL)"
      send(app.tokenRequest(appJWT: jwt), timeoutMs: 10_000, source: source, done) { response in
        GitHubAppInstallation.parseToken(
          status: response.status, body: response.body, source: source)
      }

    case .impersonate(let target, let delegates, let endpoint, let sourceCredential, let lifetime):
      // First the source credential's own cloud-platform token (cached and single-flight too).
      let sourceRequest = TokenRequest(credential: sourceCredential, scopes: [Scopes.cloudPlatform])
      let loop = context.loop
      let resume = LoopBound(loop: loop) { (result: Result<MintedToken, MintFailure>) in
        switch result {
        case .failure(let failure):
          done(
            .failure(.local("source credential \"\(sourceCredential.name)\": \(failure.message)")))
        case .success(let token):
          self.impersonate(
            target, delegates, endpoint, lifetime, token.value, now: TokenBroker.now(), done)
        }
      }
      let waiter: TokenWaiter = { result in loop.execute { resume.value(result) } }
      switch broker.acquire(sourceRequest, context: context, makeWaiter: { waiter }) {
      case .token(let token):
        impersonate(target, delegates, endpoint, lifetime, token.value, now: now, done)
      case .waiting:
        break
      case .failed(let message), .unavailable(let message):
        done(.failure(.local(message)))
      }
    }
  }

  /// A program's outcome as a token or a failure naming the program and how it ended; what it
  /// printed never appears (not retried here: the cache's backoff spaces the next run).
  static func programToken(_ outcome: ProgramRunner.Outcome, path: String, now: Double)
    -> Result<MintedToken, TokenEndpointError>
  {
    func failure(_ why: String) -> Result<MintedToken, TokenEndpointError> {
      .failure(
        TokenEndpointError(
          status: 0, error: nil, errorDescription: why, retryable: false, source: "program \(path)")
      )
    }
    guard outcome.succeeded else { return failure(outcome.termination.description) }
    return ProgramTokenOutput.parse(outcome.stdout, now: now).flatMapError {
      failure("exited with status 0 but \($0.description)")
    }
  }

  private func impersonate(
    _ target: String, _ delegates: [String], _ endpoint: String, _ lifetimeSeconds: Int,
    _ sourceToken: String, now: Double, _ done: @escaping Completion
  ) {
    let idToken = request.key.kind == .idToken
    let spec =
      idToken
      ? TokenRequests.iamGenerateIDToken(
        endpoint: endpoint, targetEmail: target, audience: request.audience,
        delegates: delegates, sourceToken: sourceToken)
      : TokenRequests.iamGenerateAccessToken(
        endpoint: endpoint, targetEmail: target, scopes: request.scopes, delegates: delegates,
        lifetimeSeconds: lifetimeSeconds, sourceToken: sourceToken)
    send(spec, timeoutMs: 10_000, source: "IAM Credentials \(endpoint)", done) { response in
      idToken
        ? TokenResponses.iamIDToken(status: response.status, body: response.body)
        : TokenResponses.iamAccessToken(status: response.status, body: response.body)
    }
  }

  /// Sends `spec` and parses the answer. An endpoint may quote what it was sent (a careless
  /// server, or whatever answers in its place): the credential in the request's `Authorization`
  /// (an app JWT, a source token) and `secrets` (what the body carries: an assertion, a subject
  /// token) are redacted from the answer before any of it is parsed or cut short, and from the
  /// error made of it.
  private func send(
    _ spec: HTTPRequestSpec, timeoutMs: Int, source: String, secrets: [String] = [],
    _ done: @escaping Completion,
    parse: @escaping (FetchTransfer.Response) -> Result<MintedToken, TokenEndpointError>
  ) {
    let sent = secrets + Self.authorizationCredential(spec)
    broker.transport.fetch(spec, timeoutMs, context) { result in
      switch result {
      case .success(var response):
        response.body = Self.redacting(sent, in: response.body)
        done(
          parse(response).flatMap { token in
            // The token goes into a header as it is: CR LF would add headers (or a second
            // request) to the upstream call, whoever issued it.
            guard ProgramTokenOutput.isHeaderSafe(token.value) else {
              return .failure(
                .classified(
                  status: response.status, error: "invalid_response",
                  errorDescription:
                    "the token has characters a header cannot carry (expected visible ASCII)"))
            }
            return .success(token)
          }.mapError { error in
            var e = error.sanitized(secrets: sent)
            e.source = source
            return e
          })
      case .failure(let error):
        done(.failure(.transport("\(error.code): \(error.message)", source: source)))
      }
    }
  }

  /// The credential an `Authorization` header carries, without its scheme word.
  static func authorizationCredential(_ spec: HTTPRequestSpec) -> [String] {
    spec.headers.compactMap { name, value in
      guard HeaderNames.equal(name, "authorization") else { return nil }
      return value.split(separator: " ", maxSplits: 1).last.map(String.init)
    }
  }

  /// `body` with every secret (of `ErrorText`'s minimum length) replaced by `[redacted]`.
  static func redacting(_ secrets: [String], in body: [UInt8]) -> [UInt8] {
    var out = body
    for secret in ErrorText.needles(secrets) {
      let needle = Array(secret.utf8)
      if out.firstRange(of: needle) != nil {
        out = out.replacing(needle, with: Array(ErrorText.redacted.utf8))
      }
    }
    return out
  }
}
