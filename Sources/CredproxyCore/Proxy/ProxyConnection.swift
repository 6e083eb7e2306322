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

  /// Stop reading the client when this much is buffered and not yet consumed.
  static let inputHighWater = 256 * 1024
  /// Pause the upstream download when this much is waiting for the client, resume below low water.
  static let outputHighWater = 1024 * 1024
  static let outputLowWater = 256 * 1024
  static let readChunk = 64 * 1024

  let fd: Int32
  unowned let context: LoopContext
  let clientAddress: String
  let input = ByteBuffer()
  let output = ByteBuffer()
  var parser: RequestHeadParser
  /// Changed only through `enter(_:)`.
  private(set) var state = ConnectionState.idle
  var interest: UInt32 = 0
  var lastActivityMs: Int64
  var drainRequested = false
  /// TLS needed to send while reading (a handshake or key update): read again when writable.
  var readWantsWrite = false
  let transport: ClientTransport
  /// The caller's IP, for `from` client rules.
  let peer: IPAddress
  /// Queued for a flush at the end of this batch (so it is queued once).
  var flushQueued = false
  /// Set once a CONNECT on an intercept route was accepted: inner requests are bound to it.
  var intercept: InterceptSession?
  /// The leaf to start TLS with once the `200 Connection established` has left (nothing is read
  /// in between: those bytes are the caller's ClientHello).
  var pendingTLS: TLSServerContext?

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

  var closed: Bool {
    if case .closed = state { return true }
    return false
  }
  /// A final answer is queued: close once it is written, read nothing more.
  var closeWhenFlushed: Bool {
    if case .closing = state { return true }
    return false
  }
  /// The exchange under way (also while a retry waits for its fresh token).
  var exchange: Exchange? { state.exchange }

  /// The one way to change state. Whatever the old state owned and the new one does not is let
  /// go here: a transfer is cancelled before its exchange is dropped (curl must never call into a
  /// request that is over), a tunnel's socket is closed.
  func enter(_ next: ConnectionState) {
    context.loop.assertInLoop()
    if let ex = state.exchange, next.exchange !== ex, let transfer = ex.transfer {
      context.multi.cancel(transfer)
      ex.transfer = nil
    }
    if let tunnel = state.tunnel, next.tunnel !== tunnel {
      tunnel.upstream.close()
      if case .tunneling = state { context.runtime.metrics.tunnelClosed() }
    }
    state = next
  }

  func start() {
    interest = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    context.loop.register(fd, events: interest, handler: self)
  }

  // MARK: socket events

  func handleEvents(fd: Int32, events: UInt32) {
    if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
      abort(reason: .clientClosed)
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
        abort(reason: .clientClosed)
        return
      }
      if events & EPOLLRDHUP.rawValue == 0, let transfer = directUpload {
        if transfer.sendPaused {
          transfer.sendPaused = false
          context.multi.whileDispatching { transfer.applyPauseState() }
          if closed { return }
        }
      } else {
        readInput()
        if closed { return }
        process()
      }
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

  func readInput() {
    readWantsWrite = false
    while input.count < Self.inputHighWater && !closed {
      switch transport.read(into: input, max: Self.readChunk) {
      case .bytes(let n):
        lastActivityMs = EventLoop.nowMs()
        // A short plain read drained the socket; TLS returns one record at a time, so go on.
        if n < Self.readChunk && !transport.isTLS { return }
      case .closed:
        // A client that closes mid-exchange aborts its own transfer; between requests it just leaves.
        if case .tunneling = state {
          endTunnel(clientClosed: true)
        } else if state.isBusy {
          abort(reason: .clientClosed)
        } else {
          close()
        }
        return
      case .wouldBlock(let wantsWrite):
        readWantsWrite = wantsWrite
        return
      case .failed:
        abort(reason: .clientError)
        return
      }
    }
  }

  /// Parses and starts requests while there is input for them.
  func process() {
    while true {
      switch state {
      case .idle, .readingHead:
        if input.isEmpty { return }
        if case .idle = state { enter(.readingHead(startedMs: EventLoop.nowMs())) }
        let result = input.withReadableBytes { parser.parse($0) }
        switch result {
        case .needMore:
          return
        case .failed(let e):
          respond(
            ErrorResponse(code: .forParseFailure(status: e.status), message: e.reason),
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
      case .awaitingLimits, .awaitingToken, .awaitingIdentity, .closing, .closed, .dialing:
        return
      }
    }
  }

  // MARK: output

  func flushNow() {
    flushQueued = false
    flush()
  }

  func respond(
    _ response: ErrorResponse, close requested: Bool, log: LogContext?,
    extraHeaders: [HeaderField] = [], bytesIn: UInt64 = 0
  ) {
    let close = requested || drainRequested
    output.append(
      response.serialized(
        close: close, extraHeaders: extraHeaders,
        reasonInStatusLine: log?.method == "CONNECT"))
    if let log {
      writeLog(log, status: response.status, bytesIn: bytesIn, bytesOut: 0, error: response.code)
    } else {
      var unparsed = LogContext(method: "-", host: "-", path: "-", startedMs: EventLoop.nowMs())
      if intercept != nil { unparsed.via = "intercept" }
      writeLog(unparsed, status: response.status, bytesIn: 0, bytesOut: 0, error: response.code)
    }
    responseQueued(thenClose: close)
    flush()
  }

  /// A whole response is queued: close once it is written, or wait for the next request.
  func responseQueued(thenClose close: Bool) {
    if close {
      enter(.closing)
    } else {
      enter(.idle)
      lastActivityMs = EventLoop.nowMs()
    }
  }

  func flush() {
    writeLoop: while !output.isEmpty {
      switch transport.write(from: output) {
      case .bytes(let n):
        if n == 0 { break writeLoop }
      case .wouldBlock:
        break writeLoop
      case .closed, .failed:
        abort(reason: .clientClosed)
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
    if output.isEmpty, let tls = pendingTLS, let session = intercept {
      pendingTLS = nil
      guard transport.startTLS(tls, serverName: session.host) else {
        abort(reason: .clientError)
        return
      }
    }
    if output.isEmpty, case .idle = state {
      // Between requests a keep-alive connection gives back buffers a large body grew.
      output.reset()
      if input.isEmpty { input.reset() }
    }
    updateInterest()
  }

  func updateInterest() {
    var want = EPOLLRDHUP.rawValue
    if !closeWhenFlushed && pendingTLS == nil && input.count < Self.inputHighWater
      && !(directUpload.map { !$0.sendPaused } ?? false)
    {
      want |= EPOLLIN.rawValue
    }
    if !output.isEmpty || readWantsWrite { want |= EPOLLOUT.rawValue }
    if want != interest {
      interest = want
      context.loop.modify(fd, events: want)
    }
  }

  /// Graceful shutdown: an idle connection closes now; a busy one after its current exchange.
  func drain() {
    switch state {
    case .idle:
      close()
    case .readingHead, .awaitingLimits, .awaitingToken, .awaitingIdentity, .exchanging, .dialing,
      .tunneling:
      exchange?.keepAlive = false
      drainRequested = true
    case .closing, .closed:
      break
    }
  }

  // MARK: deadlines

  func tick(nowMs: Int64) {
    let config = context.runtime.config
    switch state {
    case .idle:
      // A TLS handshake is the caller's first words, held to the request head's deadline (a
      // stalled or dribbled ClientHello would otherwise hold the connection for idle-timeout).
      // No HTTP answer can be sent before TLS is up: the connection is just closed.
      if transport.isHandshaking {
        if nowMs - transport.handshakeStartedMs > Int64(config.headerTimeoutMs) { close() }
      } else if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) {
        close()
      }
    case .readingHead(let startedMs):
      if nowMs - startedMs > Int64(config.headerTimeoutMs) {
        respond(
          ErrorResponse(
            code: .headerTimeout,
            message: "request head not received within \(config.headerTimeoutMs) ms"),
          close: true, log: nil)
      }
    case .exchanging(let ex):
      guard let transfer = ex.transfer else { return }
      if !ex.body.isComplete {
        // Only time spent waiting on the caller counts; while the upstream is slow to take the
        // body (bytes are buffered here), the caller is not at fault.
        let waitingOnCaller = transfer.sendPaused && input.isEmpty
        if !waitingOnCaller {
          ex.bodyDeadlineMs = max(ex.bodyDeadlineMs, nowMs + Int64(config.bodyTimeoutMs))
        } else if nowMs > ex.bodyDeadlineMs {
          context.multi.cancel(transfer)
          ex.transfer = nil
          finishWithError(
            ex,
            ErrorResponse(
              code: .bodyTimeout,
              message:
                "request body not received in time (body-timeout \(config.bodyTimeoutMs) ms, body-min-rate \(config.bodyMinRate) bytes/s)"
            ), close: true)
          return
        }
      }
      guard !ex.headSent, ex.bodyDoneMs > 0 else { return }
      if nowMs - ex.bodyDoneMs > Int64(ex.requestTimeoutMs) {
        context.multi.cancel(transfer)
        ex.transfer = nil
        finishWithError(
          ex,
          ErrorResponse(
            code: .upstreamTimeout,
            message: "upstream \(ex.upstream) did not answer within \(ex.requestTimeoutMs) ms"),
          close: !ex.keepAlive)
      }
    case .awaitingToken, .awaitingIdentity:
      break  // the mint or key fetch has its own timeouts and retries, and always answers
    case .awaitingLimits:
      break  // the limits store's commands have their own deadline
    case .dialing(let tunnel):
      if nowMs - tunnel.dialStartedMs > Int64(tunnel.connectTimeoutMs) {
        respond(
          ErrorResponse(
            code: .upstreamTimeout,
            message:
              "tunnel target \(tunnel.log.host) did not answer within \(tunnel.connectTimeoutMs) ms"
          ),
          close: true, log: tunnel.log)
      }
    case .tunneling:
      if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) { endTunnel(clientClosed: false) }
    case .closing:
      if nowMs - lastActivityMs > Int64(config.idleTimeoutMs) { close() }
    case .closed:
      break
    }
  }

  // MARK: teardown

  /// The client went away or failed: drop its transfer (and only its transfer) and close.
  func abort(reason: ErrorCode) {
    if let ex = exchange {
      if let t = ex.transfer { context.multi.cancel(t) }
      ex.transfer = nil
      logExchange(ex, status: ex.headSent ? ex.status : 499, error: reason)
    }
    close()
  }

  func close() {
    guard !closed else { return }
    enter(.closed)
    context.loop.unregister(fd)
    transport.close()
    context.connectionClosed(self)
  }

}

let crlf: [UInt8] = [13, 10]
