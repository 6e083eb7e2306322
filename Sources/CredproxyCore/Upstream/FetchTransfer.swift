import HTTP1

/// A small request of credproxy's own (token endpoints, metadata server, IAM), sent on a loop's
/// multi handle like proxied traffic, with the answer collected in memory. Never blocks the loop.
final class FetchTransfer: UpstreamTransferDelegate {
  struct Response {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
  }

  /// Token responses are small; anything larger is not a token endpoint answering.
  static let maxBody = 1 << 20

  private let body: [UInt8]
  private var sent = 0
  private var status = 0
  private var headers: [(String, String)] = []
  private var received: [UInt8] = []
  private var tooLarge = false
  private var completion: ((Result<Response, UpstreamError>) -> Void)?
  private var transfer: UpstreamTransfer?

  private init(body: [UInt8], completion: @escaping (Result<Response, UpstreamError>) -> Void) {
    self.body = body
    self.completion = completion
  }

  /// Starts the request; `completion` runs on this loop exactly once.
  @discardableResult
  static func start(
    method: String, url: String, headers: [(String, String)], body: [UInt8],
    timeoutMs: Int, context: LoopContext,
    completion: @escaping (Result<Response, UpstreamError>) -> Void
  ) -> FetchTransfer {
    let fetch = FetchTransfer(body: body, completion: completion)
    let runtime = context.runtime
    let request = UpstreamRequest(
      url: url, method: method,
      headerLines: headers.map { HeaderPolicy.curlLine($0.0, $0.1) } + ["Accept:"],
      bodyLength: method == "GET" ? nil : Int64(body.count), route: nil,
      caFile: runtime.caFile, caPath: runtime.caPath, connectTimeoutMs: min(timeoutMs, 10_000),
      totalTimeoutMs: timeoutMs)
    let transfer = UpstreamTransfer(
      handle: context.multi.easyHandle(for: nil).handle, configured: false, request: request)
    transfer.delegate = fetch
    transfer.isActive = true
    // The transfer holds the delegate weakly; keep the fetch alive until curl is done with it.
    fetch.transfer = transfer
    fetch.selfReference = fetch
    context.multi.start(transfer)
    return fetch
  }

  private var selfReference: FetchTransfer?

  func upstreamDidReceiveHead(
    status: Int, headers: [HeaderField], framing: ResponseBodyFraming
  ) {
    self.status = status
    self.headers = headers.map { ($0.name, $0.value) }
  }

  func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
    if received.count + bytes.count > Self.maxBody {
      tooLarge = true
      return true
    }
    received.append(contentsOf: bytes)
    return true
  }

  func upstreamWantsBody(into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
    let n = min(buffer.count, body.count - sent)
    if n == 0 { return .end }
    body.withUnsafeBytes { src in
      buffer.baseAddress!.copyMemory(from: src.baseAddress! + sent, byteCount: n)
    }
    sent += n
    return .bytes(n)
  }

  func upstreamDidFinish(error: UpstreamError?) {
    let done = completion
    completion = nil
    transfer = nil
    selfReference = nil
    if let error {
      done?(.failure(error))
    } else if tooLarge {
      done?(.failure(UpstreamError(.upstreamProtocol, message: "response larger than 1 MiB")))
    } else {
      done?(.success(Response(status: status, headers: headers, body: received)))
    }
  }
}
