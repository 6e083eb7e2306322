import CredproxyConfig
import EgressPolicy
import Foundation
import GoogleAuth
import Synchronization
import Wire

/// `credproxy explain URL --mint`: mints (or reuses) the token a URL would get, on a private event
/// loop, and describes it — kind, credential, scopes or audience, fingerprint, expiry. Never the
/// token itself.
public enum TokenProbe {
  public static func mint(
    config: ProxyConfig, url: String, method: String,
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) -> (text: String, ok: Bool) {
    guard let target = TargetURL(url) else { return ("cannot mint: \(url) is not a URL", false) }
    let runtime: ProxyRuntime
    do {
      runtime = try ProxyRuntime(config: config, environment: environment)
    } catch {
      return ("cannot mint: \(error)", false)
    }
    let decision = runtime.router.decide(
      method: method.uppercased(), host: target.host, explicitPort: target.port,
      path: target.pathAndQuery)
    guard case .forward(let match) = decision else {
      return ("no token: the request would be refused", false)
    }
    let route = match.route
    guard case .minted(let credential, let kind, let header) = runtime.routes[match.index].auth
    else {
      return (
        "no token: route #\(match.number) uses auth \(route.auth.typeName), nothing is minted",
        false
      )
    }
    let request: TokenRequest
    switch kind {
    case .oauth2(let prepared):
      request = prepared
    case .oidc(let audience):
      let port = route.effectivePort(explicitPort: target.port)
      request = TokenRequest(
        credential: credential,
        audience: audience.resolve(
          upstream: route.upstream, host: target.host, port: port,
          pathAndQuery: target.pathAndQuery))
    }

    let broker = TokenBroker()
    broker.secrets.withLock { $0 = runtime.secretValues }
    let loop = EventLoop(index: 0)
    let outcome = Mutex<Result<MintedToken, MintFailure>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let loopEnded = DispatchSemaphore(value: 0)
    let thread = Thread {
      do {
        let context = LoopContext(
          loop: loop, runtime: runtime, broker: broker, denials: DenialLog(), listenFDs: [])
        let waiter: TokenWaiter = { result in
          outcome.withLock { $0 = result }
          done.signal()
        }
        switch broker.acquire(request, context: context, makeWaiter: { waiter }) {
        case .token(let token):
          waiter(.success(token))
        case .waiting:
          break
        case .failed(let message), .unavailable(let message):
          waiter(.failure(MintFailure(message: message, endpointError: nil, retryAfter: 0)))
        }
        loop.run()
        withExtendedLifetime(context) {}
      }
      // The context (its curl multi, TLS connections) is gone: nothing of libcrypto runs here.
      loopEnded.signal()
    }
    thread.start()
    // Three attempts with their timeouts and backoff fit well inside this.
    let timedOut = done.wait(timeout: .now() + 60) == .timedOut
    loop.stop()
    // The loop thread tears its curl handles down while the process would already be exiting
    // (libcrypto's atexit cleanup under a live TLS connection crashed about one run in 150).
    _ = loopEnded.wait(timeout: .now() + 10)

    var lines = ["route #\(match.number) \(route.name) (\(config.sourcePath):\(route.line))"]
    if timedOut {
      lines.append("mint timed out after 60 s for \(request.credentialLabel)")
      return (lines.joined(separator: "\n") + "\n", false)
    }
    switch outcome.withLock({ $0 })! {
    case .failure(let failure):
      lines.append("mint failed: \(request.credentialLabel): \(failure.message)")
      return (lines.joined(separator: "\n") + "\n", false)
    case .success(let token):
      let kindText = token.kind == .idToken ? "ID token (OIDC)" : "access token (OAuth2)"
      lines.append("token: \(kindText) from \(request.credentialLabel)")
      if token.kind == .idToken {
        lines.append("  audience: \(request.audience)")
      } else {
        lines.append(
          request.scopes.isEmpty
            ? "  scopes: none (the program prints one token)"
            : "  scopes: \(request.scopes.joined(separator: " "))")
      }
      lines.append("  header: \(header): Bearer <token>")
      lines.append("  fingerprint: \(fingerprint(token.value))")
      let remaining = Int(token.expiresAt - TokenBroker.now())
      lines.append("  expires: \(iso8601(token.expiresAt)) (in \(remaining) s)")
      return (lines.joined(separator: "\n") + "\n", true)
    }
  }

  /// Whole seconds, as `ISO8601DateFormatter` printed them: `2026-01-01T00:00:00Z`.
  private static func iso8601(_ seconds: Double) -> String {
    guard seconds.isFinite, abs(seconds) < 1e12 else { return "1970-01-01T00:00:00Z" }
    return UTCTimestamp.iso8601(wholeSeconds: Int64(seconds.rounded(.down)), milliseconds: nil)
  }
}
