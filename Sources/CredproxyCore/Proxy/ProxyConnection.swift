import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

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
    /// CONNECT allowed; resolving and dialling the target.
    case tunnelDialing
    /// CONNECT established: bytes pass through untouched both ways.
    case tunneling
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
  /// The caller's IP, for `from` client rules.
  let peer: IPAddress
  private var tunnel: TunnelUpstream?
  private var tunnelLog: LogContext?
  private var tunnelBytesUp: UInt64 = 0
  private var tunnelBytesDown: UInt64 = 0
  private var tunnelDialStartedMs: Int64 = 0
  private var tunnelConnectTimeoutMs = 10_000

  init(
    fd: Int32, clientAddress: String, peer: IPAddress, tls: TLSServerContext?,
    context: LoopContext
  ) {
    self.fd = fd
    self.peer = peer
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
        if phase == .tunneling {
          endTunnel(clientClosed: true)
        } else if phase == .exchanging || phase == .readingHead || phase == .awaitingToken
          || phase == .tunnelDialing
        {
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
      case .tunneling:
        pumpTunnelUp()
        return
      case .awaitingToken, .closing, .tunnelDialing:
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
    let hasBody = head.framing != .none
    let keepOpen = !hasBody && head.keepAlive
    var record = LogContext(head: head, startedMs: EventLoop.nowMs())

    // Who is calling: Proxy-Authorization (Basic or Bearer) or the source address.
    let proxyAuth = head.headers.first { HeaderPolicy.nameIs($0.name, "proxy-authorization") }
    switch runtime.clients.identify(proxyAuthorization: proxyAuth?.value, peer: peer) {
    case .rejected(let why):
      record.deny("proxy_auth_required")
      respond(
        ErrorResponse(status: 407, code: "proxy_auth_required", message: why),
        close: !keepOpen, log: record,
        extraHeaders: [HeaderField(name: "Proxy-Authenticate", value: ClientIdentifier.challenge)])
      return
    case .client(let name):
      record.client = name
    case .anonymous:
      break
    }

    if head.method == "CONNECT" {
      beginTunnel(head, record: record, runtime: runtime)
      return
    }
    guard let authority = head.authority else {
      record.deny("bad_request")
      respond(
        ErrorResponse(status: 400, code: "bad_request", message: "request has no Host"),
        close: true, log: record)
      return
    }
    let path = head.pathAndQuery
    let prepared: PreparedRoute
    switch runtime.router.decide(
      method: head.method, host: authority.host, explicitPort: authority.port, path: path,
      client: record.client)
    {
    case .refuse(let status, let code, let reason, let match):
      record.routeNumber = match?.number
      let mode = match.map { runtime.config.effectiveMode($0.route) } ?? runtime.config.mode
      guard mode == .report else {
        record.deny(code)
        respond(
          ErrorResponse(status: status, code: code, message: reason), close: !keepOpen, log: record)
        return
      }
      // Report mode: log what would be denied and let it through (on the matched route, or with
      // no credential at all when nothing matched).
      record.report(code)
      prepared = match.map { runtime.routes[$0.index] } ?? runtime.reportPassthrough
    case .forward(let match):
      record.routeNumber = match.number
      prepared = runtime.routes[match.index]
    }
    let route = prepared.route
    let enforcing = runtime.config.effectiveMode(route) == .enforce
    let routeIndex = record.routeNumber.map { $0 - 1 }

    if let routeIndex, let limit = route.rate,
      case .limited(let retryAfter) = runtime.rateLimiter.take(
        client: record.client, route: routeIndex, limit: limit, now: TokenBroker.now())
    {
      if enforcing {
        record.deny("rate_limited")
        respond(
          ErrorResponse(
            status: 429, code: "rate_limited",
            message: "route \(record.route) allows \(limit) per client; retry in \(retryAfter) s"),
          close: !keepOpen, log: record,
          extraHeaders: [HeaderField(name: "Retry-After", value: String(retryAfter))])
        return
      }
      record.report("rate_limited")
    }
    var slot: ConcurrencySlot? = nil
    if let routeIndex {
      switch runtime.concurrency.tryAcquire(client: record.client, route: routeIndex) {
      case .acquired:
        slot = ConcurrencySlot(runtime.concurrency, client: record.client, route: routeIndex)
      case .clientLimit(let n), .routeLimit(let n):
        if enforcing {
          record.deny("too_many_concurrent")
          respond(
            ErrorResponse(
              status: 503, code: "too_many_concurrent",
              message:
                "\(record.client.map { "client \"\($0)\"" } ?? "this client") already has \(n) requests in flight"
            ),
            close: !keepOpen, log: record)
          return
        }
        record.report("too_many_concurrent")
      }
    }

    let maxBody = route.maxBody ?? runtime.config.maxBody
    if case .contentLength(let n) = head.framing, n > maxBody {
      record.deny("body_too_large")
      respond(
        ErrorResponse(
          status: 413, code: "body_too_large",
          message: "request body of \(n) bytes exceeds the limit of \(maxBody) bytes"),
        close: true, log: record)
      return
    }
    let port = route.effectivePort(explicitPort: authority.port)
    let hostForURL = authority.isIPv6 ? "[\(authority.host)]" : authority.host
    record.scheme = route.upstream.rawValue
    let dial = DialCheck(
      policy: runtime.ssrf, route: route, target: HostNormalizer.normalize(authority.host),
      report: !enforcing)
    var forward = Forward(
      head: head, route: route, log: record,
      origin: "\(route.upstream.rawValue)://\(hostForURL):\(port)",
      pathAndQuery: path.isEmpty ? "/" : path, maxBody: maxBody, runtime: runtime, dial: dial,
      slot: slot)
    switch prepared.auth {
    case .none:
      startTransfer(forward, credential: nil)
    case .header(let name, let value):
      forward.log.credential = route.auth.secret?.description
      startTransfer(forward, credential: (name, value))
    case .unavailable(let why):
      record.deny("credential_unavailable")
      respond(
        ErrorResponse(
          status: 503, code: "credential_unavailable",
          message: "route \(record.route) (\(route.name)) has no credential: \(why)"),
        close: !keepOpen, log: record)
    case .minted(let credential, let kind, let header):
      // Tokens go only to HTTPS upstreams; plain http is allowed to loopback (emulators, tests).
      if route.upstream == .http && !isLoopback(authority.host) {
        record.deny("insecure_upstream")
        respond(
          ErrorResponse(
            status: 403, code: "insecure_upstream",
            message:
              "route \(record.route) would send a token over plain http to \(authority.host)"),
          close: !keepOpen, log: record)
        return
      }
      forward.log.credential = credential.name
      let request: TokenRequest
      switch kind {
      case .oauth2(let prepared):
        request = prepared
      case .oidc(let audience):
        request = TokenRequest(
          credential: credential,
          audience: audience.resolve(
            upstream: route.upstream, host: authority.host, port: port, pathAndQuery: path))
      }
      acquireToken(forward, request: request, header: header)
    }
  }

  // MARK: CONNECT tunnels

  /// CONNECT host:port: allowed only on a route with `tunnel`; the bytes that follow are the
  /// client's TLS, passed through untouched (nothing is injected). The target is resolved and
  /// vetted (SSRF rules) before a byte is relayed.
  private func beginTunnel(_ head: RequestHead, record start: LogContext, runtime: ProxyRuntime) {
    var record = start
    record.scheme = "connect"
    guard case .authority(let target) = head.target, let port = target.port else {
      record.deny("bad_request")
      respond(
        ErrorResponse(status: 400, code: "bad_request", message: "CONNECT needs host:port"),
        close: true, log: record)
      return
    }
    let route: Route
    switch runtime.router.decideTunnel(host: target.host, port: port, client: record.client) {
    case .refuse(let status, let code, let reason, let match):
      record.routeNumber = match?.number
      if let match, runtime.config.effectiveMode(match.route) == .report {
        record.report(code)
        route = match.route
      } else {
        record.deny(code)
        respond(
          ErrorResponse(status: status, code: code, message: reason), close: true, log: record)
        return
      }
    case .forward(let match):
      record.routeNumber = match.number
      route = match.route
    }
    let dialHost = route.connectTo?.host ?? target.host
    let dialPort = route.connectTo?.port ?? port
    let check = DialCheck(
      policy: runtime.ssrf, route: route, target: HostNormalizer.normalize(target.host),
      report: runtime.config.effectiveMode(route) == .report)
    let upstream = TunnelUpstream(loop: context.loop)
    tunnel = upstream
    tunnelLog = record
    phase = .tunnelDialing
    tunnelDialStartedMs = EventLoop.nowMs()
    tunnelConnectTimeoutMs = route.connectTimeoutMs ?? runtime.config.connectTimeoutMs
    upstream.onConnected = { [unowned self] failure in
      guard !closed, phase == .tunnelDialing else { return }
      if let failure {
        tunnel = nil
        tunnelLog = nil
        var log = record
        if failure.status == 403 { log.deny(failure.code) }
        respond(
          ErrorResponse(status: failure.status, code: failure.code, message: failure.message),
          close: true, log: log)
        return
      }
      phase = .tunneling
      if upstream.dialledDespiteRefusal { tunnelLog?.report("blocked_address") }
      context.runtime.metrics.tunnelOpened()
      output.append("HTTP/1.1 200 Connection established\r\n\r\n")
      upstream.onReadable = { [unowned self] in pumpTunnelDown() }
      lastActivityMs = EventLoop.nowMs()
      flush()
      if !closed { pumpTunnelUp() }
    }
    upstream.dial(host: dialHost, port: dialPort) { storage in
      var copy = storage
      let ip = withUnsafeBytes(of: &copy) { raw in
        DialCheck.ipAddress(raw.baseAddress!, length: raw.count)
      }
      guard let ip else { return .refuse }
      if check.refusal(ip) == nil { return .allow }
      return check.report ? .report : .refuse
    }
  }

  /// Client → upstream: what the client sent goes out as is.
  private func pumpTunnelUp() {
    guard let tunnel, phase == .tunneling else { return }
    let before = input.count
    if !tunnel.write(from: input) {
      endTunnel(clientClosed: false)
      return
    }
    tunnelBytesUp += UInt64(before - input.count)
    tunnel.updateInterest(clientHasRoom: output.count < Self.outputHighWater)
  }

  /// Upstream → client, as far as the client keeps up.
  private func pumpTunnelDown() {
    guard let tunnel, phase == .tunneling, !closed else { return }
    if tunnel.hasPendingWrite || !input.isEmpty { pumpTunnelUp() }
    let open = tunnel.readAvailable(limit: Self.outputHighWater)
    if !tunnel.inbound.isEmpty {
      tunnelBytesDown += UInt64(tunnel.inbound.count)
      tunnel.inbound.withReadableBytes { output.append($0) }
      tunnel.inbound.consume(tunnel.inbound.count)
      lastActivityMs = EventLoop.nowMs()
      flush()
      if closed { return }
    }
    if !open {
      endTunnel(clientClosed: false)
      return
    }
    tunnel.updateInterest(clientHasRoom: output.count < Self.outputHighWater)
    updateInterest()
  }

  /// Either side closed (or went idle): log the tunnel and close both, after flushing what the
  /// upstream sent.
  private func endTunnel(clientClosed: Bool) {
    guard let log = tunnelLog else {
      close()
      return
    }
    tunnelLog = nil
    writeLog(log, status: 200, bytesIn: tunnelBytesUp, bytesOut: tunnelBytesDown, error: nil)
    if clientClosed || output.isEmpty {
      close()
    } else {
      closeWhenFlushed = true
      tunnel?.close()
      flush()
    }
  }

  /// Gets the route's token from the broker: now (cache hit), later (a mint is in flight; the
  /// connection waits without blocking the loop), or never (503 naming credential and cause).
  private func acquireToken(_ forward: Forward, request: TokenRequest, header: String) {
    let loop = context.loop
    let me = LoopBound(self)
    let acquired = context.broker.acquire(request, context: context) {
      { result in
        loop.execute {
          me.value.tokenArrived(result, forward: forward, request: request, header: header)
        }
      }
    }
    switch acquired {
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
      connectTimeoutMs: route.connectTimeoutMs ?? forward.runtime.config.connectTimeoutMs,
      dialCheck: forward.dial)
    let ex =
      exchange
      ?? Exchange(
        forward: forward,
        requestTimeoutMs: route.requestTimeoutMs ?? forward.runtime.config.requestTimeoutMs)
    ex.token = token
    // SHA-256 per request only when an audit log will record it.
    if let token, forward.runtime.audit != nil {
      ex.log.tokenFingerprint = fingerprint(token.value.value)
    }
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

  /// Queued for a flush at the end of this batch (so it is queued once).
  var flushQueued = false

  func flushNow() {
    flushQueued = false
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
    // curl usually hands over several pieces per socket event: write them out together at the
    // end of the batch (one syscall), unless enough is waiting to be worth writing now.
    if output.count >= Self.outputLowWater { flush() } else { context.flushSoon(self) }
    return true
  }

  func upstreamDidFinish(error: UpstreamError?) {
    guard let ex = exchange, !closed else { return }
    // Report mode let a refused address be dialled: the audit says so.
    if ex.transfer?.reportedReason != nil { ex.log.report("blocked_address") }
    ex.transfer = nil
    ex.forward.slot?.release()
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
    ex.forward.slot?.release()
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

  private func respond(
    _ response: ErrorResponse, close requested: Bool, log: LogContext?,
    extraHeaders: [HeaderField] = []
  ) {
    let close = requested || drainRequested
    output.append(response.serialized(close: close, extraHeaders: extraHeaders))
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
    case .readingHead, .awaitingToken, .exchanging, .tunnelDialing, .tunneling:
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
    case .tunnelDialing:
      if nowMs - tunnelDialStartedMs > Int64(tunnelConnectTimeoutMs), let log = tunnelLog {
        tunnel?.close()
        tunnel = nil
        tunnelLog = nil
        respond(
          ErrorResponse(
            status: 504, code: "upstream_timeout",
            message: "tunnel target \(log.host) did not answer within \(tunnelConnectTimeoutMs) ms"),
          close: true, log: log)
      }
    case .tunneling:
      if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) { endTunnel(clientClosed: false) }
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
    if let tunnel {
      tunnel.close()
      self.tunnel = nil
      if phase == .tunneling { context.runtime.metrics.tunnelClosed() }
    }
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
    let runtime = context.runtime
    let durationMs = EventLoop.nowMs() - log.startedMs
    runtime.accessLog.write(
      log, client: clientAddress, status: status, bytesIn: bytesIn, bytesOut: bytesOut,
      durationMs: durationMs, error: error)
    runtime.metrics.recordRequest(
      routeIndex: log.routeNumber.map { $0 - 1 }, status: status, client: log.client,
      durationSeconds: Double(durationMs) / 1000, bytesIn: bytesIn, bytesOut: bytesOut)
    var decision = log.decision
    var reason = log.reason
    if decision == .allow, let error, status >= 400 {
      // Refused by us after routing (limits, parse errors) or failed upstream: still a decision.
      if status < 500 || error == "blocked_address" { decision = .deny }
      reason = error
    }
    if decision != .allow, let reason {
      runtime.metrics.denial(reason: reason)
      context.denials.record(
        DenialLog.Entry(
          time: TokenBroker.now(), client: log.client, host: log.host, reason: reason))
    }
    if let upstreamKind = error, upstreamKind.hasPrefix("upstream_") {
      runtime.metrics.upstreamError(kind: upstreamKind)
    }
    runtime.audit?.write(
      AuditRecord(
        time: TokenBroker.now(), client: log.client, source: clientAddress, method: log.method,
        scheme: log.scheme, host: log.hostName, port: log.port, path: log.path, query: log.query,
        route: log.routeNumber, decision: decision, reason: reason, credential: log.credential,
        tokenFingerprint: log.tokenFingerprint, status: status, bytesIn: bytesIn,
        bytesOut: bytesOut, durationMs: Double(durationMs)))
  }
}

private let crlf: [UInt8] = [13, 10]

/// What the access and audit logs say about one request, filled in as it is decided.
struct LogContext {
  var method: String
  /// `host[:port]` as the caller named it.
  var host: String
  var hostName: String
  var port: Int?
  /// Path only: the query string can carry secrets (the audit log may keep it, redacted).
  var path: String
  var query: String?
  var scheme = "https"
  var routeNumber: Int?
  var client: String?
  var decision = AuditDecision.allow
  var reason: String?
  /// A credentials block name or a secret's source (`env:NAME`), never a value.
  var credential: String?
  var tokenFingerprint: String?
  var startedMs: Int64

  var route: String { routeNumber.map { "#\($0)" } ?? "-" }

  init(method: String, host: String, path: String, startedMs: Int64) {
    self.method = method
    self.host = host
    hostName = host
    self.path = path
    self.startedMs = startedMs
  }

  init(head: RequestHead, startedMs: Int64) {
    let full = head.pathAndQuery
    var path = full
    var query: String? = nil
    if let mark = full.utf8.firstIndex(of: 0x3F) {  // "?"
      path = String(full[..<mark])
      query = String(full[full.utf8.index(after: mark)...])
    }
    self.init(
      method: head.method, host: head.authority?.description ?? "-", path: path,
      startedMs: startedMs)
    self.query = query
    hostName = head.authority?.host ?? "-"
    port = head.authority?.port
  }

  mutating func deny(_ code: String) {
    decision = .deny
    reason = code
  }

  /// Report mode: would have been denied for `code`, let through.
  mutating func report(_ code: String) {
    decision = .report
    if reason == nil { reason = code }  // the first reason is the one that decided
  }
}

/// Holds one concurrency slot; released when the request is over (the last reference goes),
/// on the limiter it was taken from even if the config was reloaded since.
final class ConcurrencySlot: Sendable {
  private let limiter: ConcurrencyLimiter
  private let client: String?
  private let route: Int

  private let released = Atomic<Bool>(false)

  init(_ limiter: ConcurrencyLimiter, client: String?, route: Int) {
    self.limiter = limiter
    self.client = client
    self.route = route
  }

  /// Gives the slot back as soon as the answer is decided, before its last bytes are written:
  /// a client that waits for each response must never find its previous request still counted.
  func release() {
    if !released.exchange(true, ordering: .acquiringAndReleasing) {
      limiter.release(client: client, route: route)
    }
  }

  deinit { release() }
}

/// A routed request, decided and ready to send (kept for a retry with a fresh token).
struct Forward {
  let head: RequestHead
  let route: Route
  var log: LogContext
  /// `https://host:port`
  let origin: String
  let pathAndQuery: String
  let maxBody: UInt64
  /// The config the request started under; a reload does not change it mid-flight.
  let runtime: ProxyRuntime
  /// SSRF rules for the address curl dials.
  let dial: DialCheck
  let slot: ConcurrencySlot?
}

/// The state of one request/response on a connection.
final class Exchange {
  enum ResponseFraming { case none, contentLength, chunked, untilClose }

  let forward: Forward
  var head: RequestHead { forward.head }
  var log: LogContext
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
    log = forward.log
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
