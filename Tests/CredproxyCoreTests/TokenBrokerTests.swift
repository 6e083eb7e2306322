import CredproxyConfig
import EgressPolicy
import Foundation
import Glibc
import GoogleAuth
import XCTest

@testable import CredproxyCore

/// A token endpoint that answers from a script, plugged in through `MintTransport`: no network.
/// Retry delays are recorded and the retry runs at once (next loop iteration), so a test with
/// backoff takes milliseconds; delays are checked as numbers, never timed.
final class FakeTokenEndpoint: @unchecked Sendable {
  enum Answer {
    case http(Int, String)
    case transportError(String)
  }

  struct Call {
    var url: String
    var body: String
    var thread: pthread_t
  }

  private struct State {
    var script: [Answer]
    var calls: [Call] = []
    var delays: [Int] = []
    var hold: Bool
    var parked: [@Sendable () -> Void] = []
  }

  private let state: Shared<State>

  /// - Parameter hold: park every answer until `release()` (to let waiters pile up).
  init(_ script: [Answer], hold: Bool = false) {
    state = Shared(State(script: script, hold: hold))
  }

  var calls: [Call] { state.value.calls }
  var delays: [Int] { state.value.delays }

  var transport: MintTransport {
    MintTransport(
      fetch: { [self] spec, _, context, completion in
        let answer = state.with { s -> Answer in
          s.calls.append(
            Call(
              url: spec.url, body: String(decoding: spec.body, as: UTF8.self),
              thread: pthread_self()))
          return s.script.isEmpty
            ? .http(599, "{\"error\":\"script exhausted\"}") : s.script.removeFirst()
        }
        let result: Result<FetchTransfer.Response, UpstreamError>
        switch answer {
        case .http(let status, let body):
          result = .success(
            FetchTransfer.Response(status: status, headers: [], body: Array(body.utf8)))
        case .transportError(let message):
          result = .failure(UpstreamError(.upstreamConnect, message: message))
        }
        // Answered later on the same loop, as a real transfer is.
        let deliver = Handed((completion, result))
        let loop = context.loop
        let send: @Sendable () -> Void = { loop.execute { deliver.value.0(deliver.value.1) } }
        let parked = state.with { s -> Bool in
          if s.hold { s.parked.append(send) }
          return s.hold
        }
        if !parked { send() }
      },
      schedule: { [self] context, afterMs, work in
        state.with { $0.delays.append(afterMs) }
        context.afterDispatch(work)
      })
  }

  /// Sends every parked answer and stops holding.
  func release() {
    let parked = state.with { s -> [@Sendable () -> Void] in
      s.hold = false
      defer { s.parked = [] }
      return s.parked
    }
    for send in parked { send() }
  }

  static func token(_ value: String, expiresIn: Int = 3600) -> Answer {
    .http(
      200, "{\"access_token\":\"\(value)\",\"expires_in\":\(expiresIn),\"token_type\":\"Bearer\"}")
  }

  static func error(_ status: Int, _ error: String = "server_said_no") -> Answer {
    .http(status, "{\"error\":\"\(error)\",\"error_description\":\"status \(status)\"}")
  }
}

/// What one waiter got, and on which threads.
struct WaiterRecord: Sendable {
  var loop: Int
  var result: Result<MintedToken, MintFailure>
  /// The waiter was called on the minting loop's thread.
  var calledOnMintingLoop: Bool
  /// The hop (`loop.execute`, as `ProxyConnection.acquireToken` does) ran on the waiter's loop.
  var resumedOnOwnLoop: Bool
}

final class TokenBrokerTests: XCTestCase {
  static let secret = "cc-secret-value-0123456789"
  static let config = """
    listen 127.0.0.1:0
    access-log off
    credentials cc {
      source client-credentials token-url http://127.0.0.1:9/token client-id my-client client-secret env:CC_SECRET
    }
    credentials nosecret {
      source client-credentials token-url http://127.0.0.1:9/token client-id other client-secret env:MISSING_SECRET
    }
    """

  var runtime: ProxyRuntime!
  var loops: [TestLoop] = []

  override func setUpWithError() throws {
    runtime = try makeRuntime(Self.config, environment: ["CC_SECRET": Self.secret])
  }

  override func tearDown() {
    for l in loops { l.stop() }
    loops = []
  }

  func loop(_ index: Int, broker: TokenBroker) -> TestLoop {
    let l = TestLoop(index: index, runtime: runtime, broker: broker)
    loops.append(l)
    return l
  }

  func broker(_ endpoint: FakeTokenEndpoint) -> TokenBroker {
    let broker = TokenBroker(transport: endpoint.transport)
    broker.secrets.withLock { $0 = runtime.secretValues }
    broker.metrics.withLock { $0 = runtime.metrics }
    return broker
  }

  func request(_ name: String = "cc", scopes: [String] = ["https://example.test/scope"])
    -> TokenRequest
  {
    TokenRequest(credential: runtime.credentials[name]!, scopes: scopes)
  }

  /// Acquires on `loop`; a waiter records what it got. Returns the immediate answer.
  func acquire(
    _ request: TokenRequest, on loop: TestLoop, index: Int, minting: TestLoop? = nil,
    into records: Shared<[WaiterRecord]>, broker: TokenBroker
  ) -> TokenBroker.Acquired {
    loop.sync { context in
      broker.acquire(request, context: context) {
        { result in
          let onMinting = minting.map { $0.isCurrent } ?? true
          loop.loop.execute {
            records.with {
              $0.append(
                WaiterRecord(
                  loop: index, result: result, calledOnMintingLoop: onMinting,
                  resumedOnOwnLoop: loop.isCurrent))
            }
          }
        }
      }
    }
  }

  /// Mints `request` once from `loop` and waits for the single waiter's result.
  func mintOnce(_ request: TokenRequest, broker: TokenBroker, on l: TestLoop)
    -> Result<MintedToken, MintFailure>?
  {
    let records = Shared<[WaiterRecord]>([])
    let first = acquire(request, on: l, index: 0, into: records, broker: broker)
    guard case .waiting = first else {
      XCTFail("expected to wait for a mint, got \(first)")
      return nil
    }
    eventually { records.value.count == 1 }
    return records.value.first?.result
  }

  // MARK: success and the cache

  func testSuccessIsCachedAndTheNextAcquireIsAHit() throws {
    let endpoint = FakeTokenEndpoint([FakeTokenEndpoint.token("tok-1")])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let request = request()
    let result = try XCTUnwrap(mintOnce(request, broker: broker, on: l))
    XCTAssertEqual(try result.get().value, "tok-1")
    XCTAssertEqual(endpoint.calls.count, 1)
    XCTAssertEqual(endpoint.calls.first?.url, "http://127.0.0.1:9/token")
    XCTAssertTrue(endpoint.calls.first?.body.contains("grant_type=client_credentials") == true)

    // The next acquire is a hit: no waiter is even made, no request is sent.
    let madeWaiter = Shared(false)
    let again = l.sync { context in
      broker.acquire(request, context: context) {
        madeWaiter.with { $0 = true }
        return { _ in }
      }
    }
    guard case .token(let token) = again else { return XCTFail("expected a hit, got \(again)") }
    XCTAssertEqual(token.value, "tok-1")
    XCTAssertFalse(madeWaiter.value)
    XCTAssertEqual(endpoint.calls.count, 1)
    let metrics = runtime.metrics.render()
    XCTAssertTrue(metrics.contains("credproxy_token_mints_total{credential=\"cc\"} 1"), metrics)
    XCTAssertTrue(
      metrics.contains("credproxy_token_cache_hits_total{credential=\"cc\"} 1"), metrics)
  }

  // MARK: retries and backoff (google-auth: 3 attempts, 1 s then 2 s ±10 %)

  func testRetryableStatusesAreTriedThreeTimesThenFail() throws {
    for status in [408, 429, 500, 503, 504] {
      // A fourth answer that would succeed: a fourth attempt would show as a success.
      let endpoint = FakeTokenEndpoint([
        FakeTokenEndpoint.error(status), FakeTokenEndpoint.error(status),
        FakeTokenEndpoint.error(status), FakeTokenEndpoint.token("too-late"),
      ])
      let broker = broker(endpoint)
      let l = loop(0, broker: broker)
      let result = try XCTUnwrap(mintOnce(request(), broker: broker, on: l))
      guard case .failure(let failure) = result else {
        XCTFail("HTTP \(status): expected a failure after 3 attempts, got \(result)")
        continue
      }
      XCTAssertEqual(failure.endpointError?.status, status)
      XCTAssertEqual(endpoint.calls.count, 3, "HTTP \(status)")
      let delays = endpoint.delays
      XCTAssertEqual(delays.count, 2, "HTTP \(status): \(delays)")
      if delays.count == 2 {
        XCTAssertTrue((900...1100).contains(delays[0]), "first retry after 1 s ±10 %: \(delays)")
        XCTAssertTrue((1800...2200).contains(delays[1]), "second retry after 2 s ±10 %: \(delays)")
      }
      l.stop()
    }
  }

  func testARetryThatSucceedsDeliversTheToken() throws {
    let endpoint = FakeTokenEndpoint([
      FakeTokenEndpoint.error(503), .transportError("connection refused"),
      FakeTokenEndpoint.token("third-time"),
    ])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let result = try XCTUnwrap(mintOnce(request(), broker: broker, on: l))
    XCTAssertEqual(try result.get().value, "third-time")
    XCTAssertEqual(endpoint.calls.count, 3)
    XCTAssertEqual(endpoint.delays.count, 2)
    // Every attempt ran on the loop that started the mint.
    XCTAssertTrue(endpoint.calls.allSatisfy { pthread_equal($0.thread, l.threadID) != 0 })
  }

  func testTransportErrorsAreRetried() throws {
    let endpoint = FakeTokenEndpoint([
      .transportError("connection refused"), .transportError("connection refused"),
      .transportError("connection refused"),
    ])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let result = try XCTUnwrap(mintOnce(request(), broker: broker, on: l))
    guard case .failure(let failure) = result else { return XCTFail("\(result)") }
    XCTAssertEqual(endpoint.calls.count, 3)
    XCTAssertEqual(failure.endpointError?.error, "transport")
    XCTAssertTrue(failure.message.contains("connection refused"), failure.message)
    XCTAssertTrue(
      failure.message.contains("token endpoint http://127.0.0.1:9/token"), failure.message)
  }

  func testClientErrorsAreNotRetried() throws {
    for status in [400, 401, 403] {
      let endpoint = FakeTokenEndpoint([
        FakeTokenEndpoint.error(status, "invalid_grant"), FakeTokenEndpoint.token("never"),
      ])
      let broker = broker(endpoint)
      let l = loop(0, broker: broker)
      let result = try XCTUnwrap(mintOnce(request(), broker: broker, on: l))
      guard case .failure(let failure) = result else {
        XCTFail("HTTP \(status): expected a failure, got \(result)")
        continue
      }
      XCTAssertEqual(endpoint.calls.count, 1, "HTTP \(status) must not be retried")
      XCTAssertEqual(endpoint.delays, [], "HTTP \(status)")
      XCTAssertEqual(failure.endpointError?.status, status)
      XCTAssertEqual(failure.endpointError?.error, "invalid_grant")
      l.stop()
    }
  }

  /// ADC's metadata probe: no server there means not on Google Cloud, so no retry.
  func testAProbingMetadataServerThatIsNotThereIsNotRetried() throws {
    let endpoint = FakeTokenEndpoint([
      .transportError("connection refused"), FakeTokenEndpoint.token("never"),
    ])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let credential = MintingCredential(
      name: "default", source: .metadata(baseURL: "http://169.254.169.254", probing: true),
      refreshWindowSeconds: nil, origin: "ADC searched: metadata server")
    let result = try XCTUnwrap(
      mintOnce(TokenRequest(credential: credential, scopes: ["s"]), broker: broker, on: l))
    guard case .failure = result else { return XCTFail("\(result)") }
    XCTAssertEqual(endpoint.calls.count, 1)
    XCTAssertEqual(endpoint.delays, [])
  }

  // MARK: single flight

  func testConcurrentAcquiresOnTwoLoopsMintOnceAndEveryWaiterIsResumedOnItsOwnLoop() throws {
    let endpoint = FakeTokenEndpoint([FakeTokenEndpoint.token("shared")], hold: true)
    let broker = broker(endpoint)
    let a = loop(0, broker: broker)
    let b = loop(1, broker: broker)
    let request = request()
    let records = Shared<[WaiterRecord]>([])
    var answers: [TokenBroker.Acquired] = []
    for i in 0..<6 {
      let (l, index) = i % 2 == 0 ? (a, 0) : (b, 1)
      answers.append(
        acquire(request, on: l, index: index, minting: a, into: records, broker: broker))
    }
    for answer in answers {
      guard case .waiting = answer else { return XCTFail("every caller waits: \(answers)") }
    }
    XCTAssertEqual(endpoint.calls.count, 1, "one mint for six callers")
    XCTAssertTrue(
      pthread_equal(endpoint.calls[0].thread, a.threadID) != 0, "minted where first asked")
    XCTAssertEqual(records.value.count, 0, "nobody is woken before the endpoint answers")

    endpoint.release()
    eventually("\(records.value)") { records.value.count == 6 }
    let got = records.value
    XCTAssertEqual(got.filter { $0.loop == 0 }.count, 3)
    XCTAssertEqual(got.filter { $0.loop == 1 }.count, 3)
    for r in got {
      XCTAssertEqual(try r.result.get().value, "shared")
      XCTAssertTrue(r.calledOnMintingLoop, "the broker wakes waiters from the mint's loop")
      XCTAssertTrue(r.resumedOnOwnLoop, "loop \(r.loop)'s waiter ran elsewhere")
    }
    XCTAssertEqual(endpoint.calls.count, 1)
  }

  func testAFailureReachesEveryWaiterAndLaterCallersAreToldWhichCredential() throws {
    let endpoint = FakeTokenEndpoint(
      [FakeTokenEndpoint.error(400, "invalid_client")], hold: true)
    let broker = broker(endpoint)
    let a = loop(0, broker: broker)
    let b = loop(1, broker: broker)
    let request = request()
    let records = Shared<[WaiterRecord]>([])
    for i in 0..<4 {
      let (l, index) = i % 2 == 0 ? (a, 0) : (b, 1)
      _ = acquire(request, on: l, index: index, minting: a, into: records, broker: broker)
    }
    endpoint.release()
    eventually { records.value.count == 4 }
    var messages = Set<String>()
    for r in records.value {
      guard case .failure(let failure) = r.result else { return XCTFail("\(r.result)") }
      XCTAssertTrue(r.resumedOnOwnLoop)
      messages.insert(failure.message)
    }
    XCTAssertEqual(messages.count, 1, "every waiter gets the same failure: \(messages)")
    XCTAssertTrue(messages.first!.contains("invalid_client"), "\(messages)")

    // While the cache backs off, a caller is answered at once, naming the credential.
    let next = b.sync { context in broker.acquire(request, context: context) { { _ in } } }
    guard case .failed(let message) = next else { return XCTFail("expected backoff: \(next)") }
    XCTAssertTrue(
      message.hasPrefix("credential \"cc\" (client-credentials http://127.0.0.1:9/token): "),
      message)
    XCTAssertTrue(message.contains("invalid_client"), message)
    XCTAssertTrue(message.contains("next attempt in"), message)
    XCTAssertEqual(endpoint.calls.count, 1)
    XCTAssertTrue(
      runtime.metrics.render().contains("credproxy_token_mint_failures_total{credential=\"cc\"} 1"))
  }

  func testAnUnavailableCredentialIsNamedAndNeverFetches() {
    let endpoint = FakeTokenEndpoint([])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let answer = l.sync { context in
      broker.acquire(self.request("nosecret"), context: context) { { _ in } }
    }
    guard case .unavailable(let message) = answer else { return XCTFail("\(answer)") }
    XCTAssertTrue(message.hasPrefix("credential \"nosecret\" ("), message)
    XCTAssertTrue(message.contains("MISSING_SECRET"), message)
    XCTAssertEqual(endpoint.calls.count, 0)
  }

  // MARK: untrusted endpoint text

  func testEndpointErrorTextIsSanitisedBeforeAnyWaiterSeesIt() throws {
    let escape = "\\u001b[31m"
    let description =
      "your secret \(Self.secret) is wrong\(escape)\\r\\nInjected: yes "
      + String(repeating: "x", count: 5000)
    let endpoint = FakeTokenEndpoint([
      .http(400, "{\"error\":\"invalid_client\",\"error_description\":\"\(description)\"}")
    ])
    let broker = broker(endpoint)
    let l = loop(0, broker: broker)
    let result = try XCTUnwrap(mintOnce(request(), broker: broker, on: l))
    guard case .failure(let failure) = result else { return XCTFail("\(result)") }
    let texts = [
      failure.message, failure.endpointError?.errorDescription ?? "",
      broker.cache.snapshot().first?.lastError ?? "",
    ]
    for text in texts {
      XCTAssertFalse(text.contains(Self.secret), text)
      XCTAssertFalse(
        text.unicodeScalars.contains { $0.value < 0x20 || $0.value >= 0x7F },
        "control characters survived: \(text.debugDescription)")
      XCTAssertLessThan(text.count, 400, "not capped: \(text.count) characters")
    }
    XCTAssertTrue(failure.message.contains(ErrorText.redacted), failure.message)
    XCTAssertTrue(
      failure.endpointError?.errorDescription?.hasSuffix("...") == true,
      "\(String(describing: failure.endpointError?.errorDescription))")
    XCTAssertLessThanOrEqual(
      failure.endpointError?.errorDescription?.count ?? .max, ErrorText.limit + 3)
  }
}
