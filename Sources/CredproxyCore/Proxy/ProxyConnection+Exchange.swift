import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

/// One request/response with the upstream: the token (if any), the curl transfer, and the
/// delegate calls that stream both bodies.
extension ProxyConnection {
  /// Gets the route's token from the broker: now (cache hit), later (a mint is in flight; the
  /// connection waits without blocking the loop), or never (503 naming credential and cause).
  func acquireToken(_ forward: Forward, request: TokenRequest, header: String) {
    let loop = context.loop
    let me = LoopBound(self, loop: loop)
    let acquired = context.broker.acquire(request, context: context) {
      { result in
        loop.execute {
          me.value.tokenArrived(result, forward: forward, request: request, header: header)
        }
      }
    }
    switch acquired {
    case .token(let token):
      startTransfer(
        forward, credential: (header, request.headerValue(token.value)), token: (request, token))
    case .waiting:
      enter(.awaitingToken(forward, retrying: exchange))
    case .failed(let message):
      tokenFailed(forward, message)
    case .unavailable(let message):
      tokenFailed(forward, message, code: .credentialUnavailable)
    }
  }

  func tokenArrived(
    _ result: Result<MintedToken, MintFailure>, forward: Forward, request: TokenRequest,
    header: String
  ) {
    guard case .awaitingToken = state else { return }
    switch result {
    case .success(let token):
      startTransfer(
        forward, credential: (header, request.headerValue(token.value)), token: (request, token))
    case .failure(let failure):
      tokenFailed(forward, "\(request.credentialLabel): \(failure.message)")
    }
    if !closed { updateInterest() }
  }

  func tokenFailed(
    _ forward: Forward, _ message: String, code: ErrorCode = .tokenUnavailable
  ) {
    let head = forward.head
    respond(
      ErrorResponse(code: code, message: message),
      close: head.framing != .none || !head.keepAlive, log: forward.log)
    if !closed { process() }
  }

  /// `credential`: a minted token's header; nil for a static one, which the route prepared.
  func startTransfer(
    _ forward: Forward, credential: (name: String, value: String)?,
    token: (request: TokenRequest, value: MintedToken)? = nil
  ) {
    let head = forward.head
    let prepared = forward.prepared
    let route = prepared.route
    var lines: [String]
    if let credential {
      lines = HeaderPolicy.upstreamLines(head.headers, replacing: credential.name.lowercased())
      lines.append(HeaderPolicy.curlLine(credential.name, credential.value))
    } else {
      lines = HeaderPolicy.upstreamLines(head.headers, replacing: prepared.injectedName)
      if let line = prepared.credentialLine { lines.append(line) }
    }
    let bodyLength: Int64?
    switch head.framing {
    case .none: bodyLength = nil
    case .contentLength(let n): bodyLength = Int64(n)
    case .chunked: bodyLength = -1
    }
    // `OPTIONS *` asks about the server itself: the URL gets a path, the request line keeps
    // the asterisk.
    let asksServer = forward.asksServerOptions
    let request = UpstreamRequest(
      url: forward.origin + (asksServer ? "/" : forward.pathAndQuery), method: head.method,
      headerLines: lines, bodyLength: bodyLength, route: prepared.upstream,
      caFile: forward.runtime.caFile, caPath: forward.runtime.caPath,
      connectTimeoutMs: prepared.upstream.connectTimeoutMs,
      httpVersion: route.upstreamHTTP,
      dialCheck: forward.dial, requestTarget: asksServer ? "*" : nil,
      credentialNeedsLoopback: token != nil && route.upstream == .http,
      verdicts: context.multi.verdicts)
    let ex =
      exchange
      ?? Exchange(
        forward: forward,
        requestTimeoutMs: route.requestTimeoutMs ?? forward.runtime.config.requestTimeoutMs)
    ex.token = token
    if ex.bodyDeadlineMs == 0 {
      ex.bodyDeadlineMs = EventLoop.nowMs() + Int64(forward.runtime.config.bodyTimeoutMs)
    }
    // A small body on a minted-token route is kept, so a 401 invalid_token can be retried.
    if token != nil, ex.keptBody == nil, ex.bytesIn == 0,
      case .contentLength(let n) = head.framing, n <= Exchange.keptBodyLimit
    {
      ex.keptBody = []
      ex.keptBody!.reserveCapacity(Int(n))
    }
    // SHA-256 per request only when an audit log will record it.
    if let token, forward.runtime.audit != nil {
      ex.log.tokenFingerprint = fingerprint(token.value.value)
      switch token.request.key.kind {
      case .accessToken: ex.log.tokenScopes = token.request.scopes.joined(separator: " ")
      case .idToken: ex.log.tokenAudience = token.request.audience
      }
    }
    if drainRequested || context.draining { ex.keepAlive = false }
    if head.expectContinue && !ex.sentContinue {
      output.append("HTTP/1.1 100 Continue\r\n\r\n")
      ex.sentContinue = true
    }
    let (handle, configured) = context.multi.easyHandle(for: prepared.upstream)
    let transfer = UpstreamTransfer(handle: handle, configured: configured, request: request)
    transfer.delegate = self
    transfer.isActive = true
    ex.transfer = transfer
    enter(.exchanging(ex))
    context.multi.start(transfer)
    flush()
  }

  /// How many body bytes curl may read straight from the client socket: a Content-Length body
  /// on a plain connection (TLS decrypts into its own buffer; chunked framing must be decoded),
  /// never past the body's end (what follows is the next request). nil: not possible.
  func directUploadRoom(_ ex: Exchange, limit: Int) -> Int? {
    guard !transport.isTLS, case .contentLength(let total) = ex.body.framing else { return nil }
    let remaining = total &- ex.body.bodyBytesSoFar
    guard remaining > 0, remaining <= total else { return nil }
    return Int(min(remaining, UInt64(limit)))
  }

  /// The transfer of an upload whose body curl reads from the client socket itself (see
  /// `upstreamWantsBody`): the connection must not read ahead into `input` (a copy more per
  /// byte). When the client is readable, a paused upload is resumed instead; while curl is not
  /// paused, it reads when it has room, so the socket is not watched for input (see
  /// `updateInterest`) until curl pauses for lack of bytes or the body is complete.
  var directUpload: UpstreamTransfer? {
    guard let ex = exchange, let transfer = ex.transfer, ex.replayOffset == nil,
      directUploadRoom(ex, limit: 1) != nil
    else { return nil }
    return transfer
  }

  func resumeUploadIfWaiting() {
    guard let transfer = exchange?.transfer, transfer.sendPaused, !input.isEmpty else { return }
    transfer.sendPaused = false
    context.multi.whileDispatching { transfer.applyPauseState() }
  }

  func upstreamWantsBody(into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk {
    guard let ex = exchange else { return .failure }
    if let offset = ex.replayOffset, let kept = ex.keptBody {
      // The retry after a 401 sends the body we kept from the first attempt.
      let n = min(buffer.count, kept.count - offset)
      if n == 0 { return .end }
      kept.withUnsafeBytes {
        buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n)
      }
      ex.replayOffset = offset + n
      return .bytes(n)
    }
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
    if written == 0 && input.isEmpty, let room = directUploadRoom(ex, limit: buffer.count) {
      // Nothing buffered: read the client's bytes straight into curl's buffer (one copy fewer
      // per byte). EOF or an error is left to the event loop's read, which sees and handles it.
      let n = Glibc.read(fd, buffer.baseAddress!, room)
      if n > 0 {
        lastActivityMs = EventLoop.nowMs()
        // The bytes are already where curl wants them: the decoder only counts them.
        _ = ex.body.decode(UnsafeRawBufferPointer(start: buffer.baseAddress!, count: n)) { _ in }
        written = n
      }
    }
    ex.bytesIn += UInt64(written)
    if written > 0 { ex.creditBody(UInt64(written), config: ex.forward.runtime.config) }
    if written > 0 && ex.keptBody != nil {
      ex.keptBody!.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[..<written]))
    }
    if ex.body.isComplete && ex.bodyDoneMs == 0 { ex.bodyDoneMs = EventLoop.nowMs() }
    let chunk: BodyChunk = written > 0 ? .bytes(written) : ex.body.isComplete ? .end : .wait
    // Pausing: marked before the interest is worked out, so the client socket is watched again
    // (a direct upload is not watched while curl reads by itself).
    if case .wait = chunk { ex.transfer?.sendPaused = true }
    if !closed { updateInterest() }
    return chunk
  }

  func upstreamDidReceiveHead(
    status: Int, headers: [HeaderField], framing upstreamFraming: ResponseBodyFraming
  ) {
    guard let ex = exchange, !closed else { return }
    if status == 401, let token = ex.token, shouldRetryWithFreshToken(ex, headers) {
      // The upstream rejected a token we believed valid (revoked, rotated): drop exactly that
      // token and try once more with a new one. Only requests we can replay: those without a
      // body, or whose small body we kept whole.
      ex.retriedWithFreshToken = true
      if ex.keptBody != nil { ex.replayOffset = 0 }
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
    // The upstream's framing headers were dropped with the hop-by-hop ones: what the caller
    // sees is computed here, from what will actually be forwarded.
    var out = HeaderPolicy.clientHeaders(headers)
    switch upstreamFraming {
    case .none(let advertised):
      ex.framing = .none
      if let advertised {
        out.append(HeaderField(name: "Content-Length", value: String(advertised)))
      }
    case .length(let n):
      ex.framing = .contentLength(n)
      out.append(HeaderField(name: "Content-Length", value: String(n)))
    case .unknown where ex.head.version == .http11:
      out.append(HeaderField(name: "Transfer-Encoding", value: "chunked"))
      ex.framing = .chunked
    case .unknown:
      ex.framing = .untilClose
      ex.keepAlive = false
    }
    // An answer that comes before the whole request body was read: the rest of that body is
    // still on the connection and must never be parsed as a request, so this is the last answer.
    if !ex.body.isComplete { ex.keepAlive = false }
    if !ex.keepAlive { out.append(HeaderField(name: "Connection", value: "close")) }
    output.append(serializeResponseHead(status: status, headers: out))
    ex.headSent = true
    // Sent with the first body bytes if they come in this batch, else at its end.
    context.flushSoon(self)
  }

  func shouldRetryWithFreshToken(_ ex: Exchange, _ headers: [HeaderField]) -> Bool {
    guard !ex.retriedWithFreshToken else { return false }
    guard ex.head.framing == .none || (ex.keptBody != nil && ex.body.isComplete) else {
      return false
    }
    return headers.contains {
      HeaderPolicy.nameIs($0.name, "www-authenticate") && $0.value.contains("invalid_token")
    }
  }

  func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let ex = exchange, !closed else { return false }
    // curl may call with 0 bytes; an empty chunk would end the body.
    if bytes.isEmpty { return true }
    if output.count >= Self.outputHighWater { return false }
    switch ex.framing {
    case .chunked:
      output.append(chunkHeader(bytes.count))
      output.append(bytes)
      output.append(crlf)
    case .contentLength(let n) where ex.bytesOut + UInt64(bytes.count) > n:
      // More than the length we announced: the excess would be read as the next response.
      ex.overran = true
      return false
    case .none:
      return true  // no body may follow this head; curl should not hand one over
    default:
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
    if ex.transfer?.reportedReason != nil { ex.log.report(.blockedAddress) }
    ex.transfer = nil
    ex.forward.slot?.release()
    let requestFullyRead = ex.body.isComplete
    if ex.overran || !ex.framing.isComplete(after: ex.bytesOut) {
      finishWithError(
        ex,
        ErrorResponse(
          code: .upstreamProtocol,
          message: "upstream \(ex.upstream) sent a body of another length than it announced"),
        close: true)
    } else if let bodyError = ex.bodyError {
      finishWithError(
        ex,
        ErrorResponse(
          code: .forParseFailure(status: bodyError.status),
          message: bodyError.reason), close: true)
    } else if let error {
      finishWithError(
        ex,
        ErrorResponse(
          code: error.code,
          message: "upstream \(ex.upstream) failed: \(error.message)"),
        // After a protocol error nothing more can be trusted on either connection.
        close: !requestFullyRead || !ex.keepAlive || error.code == .upstreamProtocol)
    } else {
      if ex.framing == .chunked { output.append(lastChunk) }
      logExchange(ex, status: ex.status, error: nil)
      // Unread request body bytes must never be parsed as a request: close after this answer.
      responseQueued(
        thenClose: ex.framing == .untilClose || !ex.keepAlive || drainRequested
          || !requestFullyRead)
      flush()
      if !closed {
        process()
        if !closed { updateInterest() }
      }
    }
  }

  /// An exchange failed: answer with an error if nothing was sent yet, else cut the connection
  /// (the client must not take a truncated body for a complete one).
  func finishWithError(_ ex: Exchange, _ response: ErrorResponse, close: Bool) {
    ex.forward.slot?.release()
    if ex.headSent {
      logExchange(ex, status: ex.status, error: response.code)
      self.close()
      return
    }
    // What left for the upstream is counted even when it then failed.
    respond(response, close: close, log: ex.log, bytesIn: ex.bytesIn)
    if !closed {
      process()
      if !closed { updateInterest() }
    }
  }
}
