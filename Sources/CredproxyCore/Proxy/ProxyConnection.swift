import CSystem
import CredproxyConfig
import Glibc
import GoogleAuth
import HTTP1

/// One client connection: reads requests with the strict parser, routes them, runs one upstream
/// transfer at a time (so pipelined requests are answered in order) and streams both bodies with
/// backpressure: when the client reads slowly, curl's download is paused; when curl is not taking
/// the upload, we stop reading the client.
final class ProxyConnection: EventHandler, UpstreamTransferDelegate {
  private enum Phase {
    /// Between requests, waiting for the first byte (idle-timeout applies).
    case idle
    /// Part of a request head is in (header-timeout applies).
    case readingHead
    /// Routed; waiting for the broker to mint the route's token.
    case awaitingToken
    case exchanging
    /// An error response is on its way out; nothing more is read.
    case closing
  }

  /// Stop reading the client when this much is buffered and not yet consumed.
  static let inputHighWater = 256 * 1024
  /// Pause the upstream download when this much is waiting for the client, resume below low water.
  static let outputHighWater = 1024 * 1024
  static let outputLowWater = 256 * 1024
  static let readChunk = 64 * 1024

  let fd: Int32
  unowned let context: LoopContext
  let clientAddress: String
  private let input = ByteBuffer()
  private let output = ByteBuffer()
  private var parser: RequestHeadParser
  private var phase = Phase.idle
  private var interest: UInt32 = 0
  private var lastActivityMs: Int64
  private var headStartedMs: Int64 = 0
  private var closeWhenFlushed = false
  private var drainRequested = false
  /// TLS needed to send while reading (a handshake or key update): read again when writable.
  private var readWantsWrite = false
  private let transport: ClientTransport
  private(set) var closed = false
  private var exchange: Exchange?

  init(fd: Int32, clientAddress: String, tls: TLSServerContext?, context: LoopContext) {
    self.fd = fd
    transport = ClientTransport(fd: fd, tls: tls)
    self.clientAddress = clientAddress
    self.context = context
    parser = RequestHeadParser(limits: context.runtime.limits)
    lastActivityMs = EventLoop.nowMs()
  }

  func start() {
    interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    context.loop.register(fd, events: interest, handler: self)
  }

  // MARK: socket events

  func handleEvents(fd: Int32, events: UInt32) {
    if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
      abort(reason: "client_closed")
      return
    }
    if events & EPOLLOUT.rawValue != 0 {
      flush()
      if closed { return }
      if readWantsWrite {
        readInput()
        if closed { return }
        process()
      }
    }
    if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 {
      if events & EPOLLIN.rawValue == 0 && interest & EPOLLIN.rawValue == 0 {
        // The client hung up while we were not reading from it.
        abort(reason: "client_closed")
        return
      }
      readInput()
      if closed { return }
      process()
      // TLS may need to read before a stalled write can go on.
      if transport.isTLS && !output.isEmpty && !closed { flush() }
    }
    // OpenSSL may hold decrypted bytes the socket will not announce again.
    while !closed && transport.hasBufferedInput && input.count < Self.inputHighWater {
      readInput()
      if closed { return }
      process()
    }
    if !closed { updateInterest() }
  }

  private func readInput() {
    readWantsWrite = false
    while input.count < Self.inputHighWater && !closed {
      switch transport.read(into: input, max: Self.readChunk) {
      case .bytes(let n):
        lastActivityMs = EventLoop.nowMs()
        // A short plain read drained the socket; TLS returns one record at a time, so go on.
        if n < Self.readChunk && !transport.isTLS { return }
      case .closed:
        // A client that closes mid-exchange aborts its own transfer; between requests it just leaves.
        if phase == .exchanging || phase == .readingHead || phase == .awaitingToken {
          abort(reason: "client_closed")
        } else {
          close()
        }
        return
      case .wouldBlock(let wantsWrite):
        readWantsWrite = wantsWrite
        return
      case .failed:
        abort(reason: "client_error")
        return
      }
    }
  }

  /// Parses and starts requests while there is input for them.
  private func process() {
    while !closed && !closeWhenFlushed {
      switch phase {
      case .idle, .readingHead:
        if input.isEmpty { return }
        if phase == .idle {
          phase = .readingHead
          headStartedMs = EventLoop.nowMs()
        }
        let result = input.withReadableBytes { parser.parse($0) }
        switch result {
        case .needMore:
          return
        case .failed(let e):
          respond(
            ErrorResponse(status: e.status, code: Self.code(for: e.status), message: e.reason),
            close: true, log: nil)
          return
        case .complete(let head, let consumed):
          input.consume(consumed)
          parser.reset()
          begin(head)
        }
      case .exchanging:
        resumeUploadIfWaiting()
        return
      case .awaitingToken, .closing:
        return
      }
    }
  }

  static func code(for status: Int) -> String {
    switch status {
    case 408: return "header_timeout"
    case 413: return "body_too_large"
    case 414: return "request_line_too_long"
    case 417: return "expectation_failed"
    case 431: return "headers_too_large"
    case 501: return "not_implemented"
    case 505: return "http_version_not_supported"
    default: return "bad_request"
    }
  }

  // MARK: one exchange

  private func begin(_ head: RequestHead) {
    let runtime = context.runtime
    let now = EventLoop.nowMs()
    let hasBody = head.framing != .none
    var record = LogContext(head: head, host: head.authority?.description ?? "-", startedMs: now)

    if head.method == "CONNECT" {
      respond(
        ErrorResponse(
          status: 405, code: "connect_not_supported",
          message: "CONNECT tunnels are not enabled on this proxy; send plain http:// requests"
            + " (HTTP_PROXY) and credproxy forwards them over HTTPS"),
        close: true, log: record)
      return
    }
    guard let authority = head.authority else {
      respond(
        ErrorResponse(status: 400, code: "bad_request", message: "request has no Host"),
        close: true, log: record)
      return
    }
    let path = head.pathAndQuery
    switch runtime.router.decide(
      method: head.method, host: authority.host, explicitPort: authority.port, path: path)
    {
    case .refuse(let status, let code, let reason, let match):
      record.route = match.map { "#\($0.index + 1)" } ?? "-"
      respond(
        ErrorResponse(status: status, code: code, message: reason),
        close: hasBody || !head.keepAlive, log: record)
    case .forward(let match):
      let prepared = runtime.routes[match.index]
      let route = prepared.route
      record.route = "#\(match.index + 1)"
      let maxBody = route.maxBody ?? runtime.config.maxBody
      if case .contentLength(let n) = head.framing, n > maxBody {
        respond(
          ErrorResponse(
            status: 413, code: "body_too_large",
            message: "request body of \(n) bytes exceeds the limit of \(maxBody) bytes"),
          close: true, log: record)
        return
      }
      let port = route.effectivePort(explicitPort: authority.port)
      let hostForURL = authority.isIPv6 ? "[\(authority.host)]" : authority.host
      let forward = Forward(
        head: head, route: route, log: record,
        origin: "\(route.upstream.rawValue)://\(hostForURL):\(port)",
        pathAndQuery: path.isEmpty ? "/" : path, maxBody: maxBody, runtime: runtime)
      switch prepared.auth {
      case .none:
        startTransfer(forward, credential: nil)
      case .header(let name, let value):
        startTransfer(forward, credential: (name, value))
      case .unavailable(let why):
        respond(
          ErrorResponse(
            status: 503, code: "credential_unavailable",
            message: "route \(record.route) (\(route.name)) has no credential: \(why)"),
          close: hasBody || !head.keepAlive, log: record)
      case .minted(let credential, let kind, let header):
        // Tokens go only to HTTPS upstreams; plain http is allowed to loopback (emulators, tests).
        if route.upstream == .http && !isLoopback(authority.host) {
          respond(
            ErrorResponse(
              status: 403, code: "insecure_upstream",
              message:
                "route \(record.route) would send a token over plain http to \(authority.host)"),
            close: hasBody || !head.keepAlive, log: record)
          return
        }
        let request: TokenRequest
        switch kind {
        case .oauth2(let scopes):
          request = TokenRequest(credential: credential, scopes: scopes)
        case .oidc(let audience):
          request = TokenRequest(
            credential: credential,
            audience: audience.resolve(
              upstream: route.upstream, host: authority.host, port: port, pathAndQuery: path))
        }
        acquireToken(forward, request: request, header: header)
      }
    }
  }

  /// Gets the route's token from the broker: now (cache hit), later (a mint is in flight; the
  /// connection waits without blocking the loop), or never (503 naming credential and cause).
  private func acquireToken(_ forward: Forward, request: TokenRequest, header: String) {
    let loop = context.loop
    let me = LoopBound(self)
    let waiter: TokenWaiter = { result in
      loop.execute {
        me.value.tokenArrived(result, forward: forward, request: request, header: header)
      }
    }
    switch context.broker.acquire(request, context: context, waiter: waiter) {
    case .token(let token):
      startTransfer(forward, credential: (header, "Bearer " + token.value), token: (request, token))
    case .waiting:
      phase = .awaitingToken
    case .failed(let message):
      tokenFailed(forward, message)
    case .unavailable(let message):
      tokenFailed(forward, message, code: "credential_unavailable")
    }
  }

  private func tokenArrived(
    _ result: Result<MintedToken, MintFailure>, forward: Forward, request: TokenRequest,
    header: String
  ) {
    guard !closed, phase == .awaitingToken else { return }
    switch result {
    case .success(let token):
      startTransfer(forward, credential: (header, "Bearer " + token.value), token: (request, token))
    case .failure(let failure):
      tokenFailed(forward, "\(request.credentialLabel): \(failure.message)")
    }
    if !closed { updateInterest() }
  }

  private func tokenFailed(
    _ forward: Forward, _ message: String, code: String = "token_unavailable"
  ) {
    let head = forward.head
    exchange = nil
    respond(
      ErrorResponse(status: 503, code: code, message: message),
      close: head.framing != .none || !head.keepAlive, log: forward.log)
    if !closed { process() }
  }

  private func startTransfer(
    _ forward: Forward, credential: (name: String, value: String)?,
    token: (request: TokenRequest, value: MintedToken)? = nil
  ) {
    let head = forward.head
    let route = forward.route
    var lines = HeaderPolicy.upstreamLines(
      head.headers, replacing: credential.map { $0.name.lowercased() })
    if let credential { lines.append(HeaderPolicy.curlLine(credential.name, credential.value)) }
    let bodyLength: Int64?
    switch head.framing {
    case .none: bodyLength = nil
    case .contentLength(let n): bodyLength = Int64(n)
    case .chunked: bodyLength = -1
    }
    let request = UpstreamRequest(
      url: forward.origin + forward.pathAndQuery, method: head.method, headerLines: lines,
      bodyLength: bodyLength, connectTo: route.connectTo?.description,
      caFile: forward.runtime.caFile, caPath: forward.runtime.caPath,
      connectTimeoutMs: route.connectTimeoutMs ?? forward.runtime.config.connectTimeoutMs)
    let ex =
      exchange
      ?? Exchange(
        forward: forward,
        requestTimeoutMs: route.requestTimeoutMs ?? forward.runtime.config.requestTimeoutMs)
    ex.token = token
    if drainRequested || context.draining { ex.keepAlive = false }
    if head.expectContinue && !ex.sentContinue {
      output.append("HTTP/1.1 100 Continue\r\n\r\n")
      ex.sentContinue = true
    }
    let transfer = UpstreamTransfer(handle: context.multi.makeEasyHandle(), request: request)
    transfer.delegate = self
    transfer.isActive = true
    ex.transfer = transfer
    exchange = ex
    phase = .exchanging
    context.multi.start(transfer)
    flush()
  }

  private func resumeUploadIfWaiting() {
    guard let transfer = exchange?.transfer, transfer.sendPaused, !input.isEmpty else { return }
    transfer.sendPaused = false
    context.multi.whileDispatching { transfer.applyPauseState() }
  }

  func upstreamWantsBody(into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
    guard let ex = exchange else { return .failure }
    var written = 0
    decoding: while !ex.body.isComplete && written < buffer.count && !input.isEmpty {
      let room = buffer.count - written
      var emitted = 0
      let result = input.withReadableBytes { bytes in
        let window = UnsafeRawBufferPointer(rebasing: bytes.prefix(room))
        return ex.body.decode(window) { data in
          (buffer.baseAddress! + written + emitted).copyMemory(
            from: data.baseAddress!, byteCount: data.count)
          emitted += data.count
        }
      }
      switch result {
      case .progress(let consumed):
        input.consume(consumed)
        written += emitted
        if consumed == 0 { break decoding }
      case .done(let consumed):
        input.consume(consumed)
        written += emitted
      case .failed(let e):
        ex.bodyError = e
        return .failure
      }
    }
    ex.bytesIn += UInt64(written)
    if ex.body.isComplete && ex.bodyDoneMs == 0 { ex.bodyDoneMs = EventLoop.nowMs() }
    if !closed { updateInterest() }
    if written > 0 { return .bytes(written) }
    return ex.body.isComplete ? .end : .wait
  }

  func upstreamDidReceiveHead(status: Int, headers: [HeaderField]) {
    guard let ex = exchange, !closed else { return }
    if status == 401, let token = ex.token, shouldRetryWithFreshToken(ex, headers) {
      // The upstream rejected a token we believed valid (revoked, rotated): drop exactly that
      // token and try once more with a new one. Only requests we can replay: those without a body.
      ex.retriedWithFreshToken = true
      context.broker.cache.evict(token.request.key, value: token.value.value)
      if let transfer = ex.transfer { context.multi.cancel(transfer) }
      ex.transfer = nil
      let forward = ex.forward
      let header = forward.route.injectedHeaderName ?? "Authorization"
      context.afterDispatch { [self] in
        guard !closed, exchange === ex else { return }
        acquireToken(forward, request: token.request, header: header)
      }
      return
    }
    ex.status = status
    var out = HeaderPolicy.clientHeaders(headers)
    let bodyless = ex.head.method == "HEAD" || status == 204 || status == 304
    if bodyless {
      ex.framing = .none
    } else if headers.contains(where: { HeaderPolicy.nameIs($0.name, "content-length") }) {
      ex.framing = .contentLength
    } else if ex.head.version == .http11 {
      out.append(HeaderField(name: "Transfer-Encoding", value: "chunked"))
      ex.framing = .chunked
    } else {
      ex.framing = .untilClose
      ex.keepAlive = false
    }
    if !ex.keepAlive { out.append(HeaderField(name: "Connection", value: "close")) }
    output.append(serializeResponseHead(status: status, headers: out))
    ex.headSent = true
    // Sent with the first body bytes if they come in this batch, else at its end.
    context.flushSoon(self)
  }

  func flushNow() {
    flush()
  }

  private func shouldRetryWithFreshToken(_ ex: Exchange, _ headers: [HeaderField]) -> Bool {
    guard !ex.retriedWithFreshToken, ex.head.framing == .none else { return false }
    return headers.contains {
      HeaderPolicy.nameIs($0.name, "www-authenticate") && $0.value.contains("invalid_token")
    }
  }

  func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let ex = exchange, !closed else { return false }
    if bytes.isEmpty { return true }  // curl may call with 0 bytes; an empty chunk would end the body
    if output.count >= Self.outputHighWater { return false }
    if ex.framing == .chunked {
      output.append(chunkHeader(bytes.count))
      output.append(bytes)
      output.append(crlf)
    } else {
      output.append(bytes)
    }
    ex.bytesOut += UInt64(bytes.count)
    flush()
    return true
  }

  func upstreamDidFinish(error: UpstreamError?) {
    guard let ex = exchange, !closed else { return }
    ex.transfer = nil
    let requestFullyRead = ex.body.isComplete
    if let bodyError = ex.bodyError {
      finishWithError(
        ex,
        ErrorResponse(
          status: bodyError.status, code: Self.code(for: bodyError.status),
          message: bodyError.reason), close: true)
    } else if let error {
      finishWithError(
        ex,
        ErrorResponse(
          status: error.status, code: error.kind.rawValue,
          message: "upstream \(ex.upstream) failed: \(error.message)"),
        close: !requestFullyRead || !ex.keepAlive)
    } else {
      if ex.framing == .chunked { output.append(lastChunk) }
      logExchange(ex, status: ex.status, error: nil)
      exchange = nil
      if ex.framing == .untilClose || !ex.keepAlive || drainRequested {
        closeWhenFlushed = true
        phase = .closing
      } else {
        phase = .idle
        lastActivityMs = EventLoop.nowMs()
      }
      flush()
      if !closed {
        process()
        if !closed { updateInterest() }
      }
    }
  }

  /// An exchange failed: answer with an error if nothing was sent yet, else cut the connection
  /// (the client must not take a truncated body for a complete one).
  private func finishWithError(_ ex: Exchange, _ response: ErrorResponse, close: Bool) {
    exchange = nil
    if ex.headSent {
      logExchange(ex, status: ex.status, error: response.code)
      self.close()
      return
    }
    respond(response, close: close, log: ex.log)
    if !closed {
      if !close { phase = .idle }
      process()
      if !closed { updateInterest() }
    }
  }

  // MARK: output

  private func respond(_ response: ErrorResponse, close requested: Bool, log: LogContext?) {
    let close = requested || drainRequested
    output.append(response.serialized(close: close))
    if let log {
      writeLog(log, status: response.status, bytesIn: 0, bytesOut: 0, error: response.code)
    } else {
      writeLog(
        LogContext(method: "-", host: "-", path: "-", startedMs: EventLoop.nowMs()),
        status: response.status, bytesIn: 0, bytesOut: 0, error: response.code)
    }
    if close {
      closeWhenFlushed = true
      phase = .closing
    } else {
      phase = .idle
      lastActivityMs = EventLoop.nowMs()
    }
    flush()
  }

  private func flush() {
    writeLoop: while !output.isEmpty {
      switch transport.write(from: output) {
      case .bytes(let n):
        if n == 0 { break writeLoop }
      case .wouldBlock:
        break writeLoop
      case .closed, .failed:
        abort(reason: "client_closed")
        return
      }
    }
    if let transfer = exchange?.transfer, transfer.receivePaused,
      output.count < Self.outputLowWater
    {
      transfer.receivePaused = false
      context.multi.whileDispatching { transfer.applyPauseState() }
      if closed { return }
    }
    if output.isEmpty && closeWhenFlushed {
      close()
      return
    }
    updateInterest()
  }

  private func updateInterest() {
    var want = EPOLLRDHUP.rawValue
    if !closeWhenFlushed && input.count < Self.inputHighWater { want |= EPOLLIN.rawValue }
    if !output.isEmpty || readWantsWrite { want |= EPOLLOUT.rawValue }
    if want != interest {
      interest = want
      context.loop.modify(fd, events: want)
    }
  }

  /// Graceful shutdown: an idle connection closes now; a busy one after its current exchange.
  func drain() {
    switch phase {
    case .idle:
      close()
    case .readingHead, .awaitingToken, .exchanging:
      exchange?.keepAlive = false
      drainRequested = true
    case .closing:
      break
    }
  }

  // MARK: deadlines

  func tick(nowMs: Int64) {
    let config = context.runtime.config
    switch phase {
    case .idle:
      if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) { close() }
    case .readingHead:
      if nowMs - headStartedMs > Int64(config.headerTimeoutMs) {
        respond(
          ErrorResponse(
            status: 408, code: "header_timeout",
            message: "request head not received within \(config.headerTimeoutMs) ms"),
          close: true, log: nil)
      }
    case .exchanging:
      guard let ex = exchange, let transfer = ex.transfer, !ex.headSent, ex.bodyDoneMs > 0 else {
        return
      }
      if nowMs - ex.bodyDoneMs > Int64(ex.requestTimeoutMs) {
        context.multi.cancel(transfer)
        ex.transfer = nil
        finishWithError(
          ex,
          ErrorResponse(
            status: 504, code: "upstream_timeout",
            message: "upstream \(ex.upstream) did not answer within \(ex.requestTimeoutMs) ms"),
          close: !ex.keepAlive)
      }
    case .awaitingToken:
      break  // the mint has its own timeouts and retries, and always answers
    case .closing:
      if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) { close() }
    }
  }

  // MARK: teardown

  /// The client went away or failed: drop its transfer (and only its transfer) and close.
  private func abort(reason: String) {
    if let ex = exchange {
      if let t = ex.transfer { context.multi.cancel(t) }
      ex.transfer = nil
      logExchange(ex, status: ex.headSent ? ex.status : 499, error: reason)
      exchange = nil
    }
    close()
  }

  func close() {
    guard !closed else { return }
    closed = true
    if let t = exchange?.transfer {
      context.multi.cancel(t)
      exchange?.transfer = nil
    }
    exchange = nil
    context.loop.unregister(fd)
    transport.close()
    context.connectionClosed(self)
  }

  // MARK: access log

  private func logExchange(_ ex: Exchange, status: Int, error: String?) {
    writeLog(ex.log, status: status, bytesIn: ex.bytesIn, bytesOut: ex.bytesOut, error: error)
  }

  private func writeLog(
    _ log: LogContext, status: Int, bytesIn: UInt64, bytesOut: UInt64, error: String?
  ) {
    context.runtime.accessLog.write(
      AccessRecord(
        client: clientAddress, method: log.method, host: log.host, path: log.path,
        route: log.route, status: status, bytesIn: bytesIn, bytesOut: bytesOut,
        durationMs: EventLoop.nowMs() - log.startedMs, error: error))
  }
}

private let crlf: [UInt8] = [13, 10]

/// What the access log needs to know about a request, fixed when it starts.
struct LogContext {
  var method: String
  var host: String
  /// Path only: the query string can carry secrets.
  var path: String
  var route = "-"
  var startedMs: Int64

  init(method: String, host: String, path: String, startedMs: Int64) {
    self.method = method
    self.host = host
    self.path = path
    self.startedMs = startedMs
  }

  init(head: RequestHead, host: String, startedMs: Int64) {
    let full = head.pathAndQuery
    let path = full.firstIndex(of: "?").map { String(full[..<$0]) } ?? full
    self.init(method: head.method, host: host, path: path, startedMs: startedMs)
  }
}

/// A routed request, decided and ready to send (kept for a retry with a fresh token).
struct Forward {
  let head: RequestHead
  let route: Route
  let log: LogContext
  /// `https://host:port`
  let origin: String
  let pathAndQuery: String
  let maxBody: UInt64
  /// The config the request started under; a reload does not change it mid-flight.
  let runtime: ProxyRuntime
}

/// The state of one request/response on a connection.
final class Exchange {
  enum ResponseFraming { case none, contentLength, chunked, untilClose }

  let forward: Forward
  var head: RequestHead { forward.head }
  var log: LogContext { forward.log }
  var upstream: String { forward.origin }
  let requestTimeoutMs: Int
  var body: BodyDecoder
  var transfer: UpstreamTransfer?
  var bodyError: HTTPParseError?
  /// When the request body was fully read (or the start, for requests without one); 0 before.
  var bodyDoneMs: Int64 = 0
  var framing = ResponseFraming.none
  var headSent = false
  var sentContinue = false
  /// The minted token this attempt carries, so a 401 `invalid_token` can evict exactly it.
  var token: (request: TokenRequest, value: MintedToken)?
  var retriedWithFreshToken = false
  var status = 0
  var bytesIn: UInt64 = 0
  var bytesOut: UInt64 = 0
  var keepAlive: Bool

  init(forward: Forward, requestTimeoutMs: Int) {
    self.forward = forward
    self.requestTimeoutMs = requestTimeoutMs
    body = BodyDecoder(framing: forward.head.framing, maxBody: forward.maxBody)
    keepAlive = forward.head.keepAlive
    if body.isComplete { bodyDoneMs = forward.log.startedMs }
  }
}

/// Loopback targets may receive tokens over plain http (local emulators and tests).
func isLoopback(_ host: String) -> Bool {
  host == "localhost" || host.hasPrefix("127.") || host == "::1"
}
