import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

/// CONNECT tunnels: a vetted TCP connection, then bytes relayed untouched both ways.
extension ProxyConnection {
  /// CONNECT host:port: allowed only on a route with `tunnel`; the bytes that follow are the
  /// client's TLS, passed through untouched (nothing is injected). The target is resolved and
  /// vetted (SSRF rules) before a byte is relayed.
  func beginTunnel(_ head: RequestHead, record start: LogContext, runtime: ProxyRuntime) {
    var record = start
    record.scheme = "connect"
    guard case .authority(let target) = head.target, let port = target.port else {
      record.deny(.badRequest)
      respond(
        ErrorResponse(code: .badRequest, message: "CONNECT needs host:port"),
        close: true, log: record)
      return
    }
    let route: Route
    switch runtime.router.decideTunnel(host: target.host, port: port, client: record.client) {
    case .refuse(let code, let reason, let match):
      record.routeNumber = match?.number
      if let match, runtime.config.effectiveMode(match.route) == .report {
        record.report(code)
        route = match.route
      } else {
        record.deny(code)
        respond(
          ErrorResponse(code: code, message: reason), close: true, log: record)
        return
      }
    case .forward(let match):
      record.routeNumber = match.number
      route = match.route
    }
    if route.intercept {
      beginIntercept(target: target, port: port, record: record, runtime: runtime)
      return
    }
    let dialHost = route.connectTo?.host ?? target.host
    let dialPort = route.connectTo?.port ?? port
    let check = DialCheck(
      policy: runtime.ssrf, route: route,
      routeKey: .init(generation: runtime.generation, index: (record.routeNumber ?? 0) - 1),
      host: target.host,
      report: runtime.config.effectiveMode(route) == .report)
    let upstream = TunnelUpstream(loop: context.loop)
    let tunnel = Tunnel(
      upstream: upstream, log: record, dialStartedMs: EventLoop.nowMs(),
      connectTimeoutMs: route.connectTimeoutMs ?? runtime.config.connectTimeoutMs)
    enter(.dialing(tunnel))
    upstream.onConnected = { [unowned self] failure in
      guard case .dialing(let current) = state, current === tunnel else { return }
      if let failure {
        var log = tunnel.log
        if failure.code.status == 403 { log.deny(failure.code) }
        respond(
          ErrorResponse(code: failure.code, message: failure.message),
          close: true, log: log)
        return
      }
      enter(.tunneling(tunnel))
      if upstream.dialledDespiteRefusal { tunnel.log.report(.blockedAddress) }
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
  func pumpTunnelUp() {
    guard case .tunneling(let tunnel) = state else { return }
    let before = input.count
    if !tunnel.upstream.write(from: input) {
      endTunnel(clientClosed: false)
      return
    }
    tunnel.bytesUp += UInt64(before - input.count)
    tunnel.upstream.updateInterest(clientHasRoom: output.count < Self.outputHighWater)
  }

  /// Upstream → client, as far as the client keeps up.
  func pumpTunnelDown() {
    guard case .tunneling(let tunnel) = state else { return }
    let upstream = tunnel.upstream
    if upstream.hasPendingWrite || !input.isEmpty { pumpTunnelUp() }
    let open = upstream.readAvailable(limit: Self.outputHighWater)
    if !upstream.inbound.isEmpty {
      tunnel.bytesDown += UInt64(upstream.inbound.count)
      upstream.inbound.withReadableBytes { output.append($0) }
      upstream.inbound.consume(upstream.inbound.count)
      lastActivityMs = EventLoop.nowMs()
      flush()
      if closed { return }
    }
    if !open {
      endTunnel(clientClosed: false)
      return
    }
    upstream.updateInterest(clientHasRoom: output.count < Self.outputHighWater)
    updateInterest()
  }

  /// Either side closed (or went idle): log the tunnel and close both, after flushing what the
  /// upstream sent.
  func endTunnel(clientClosed: Bool) {
    guard case .tunneling(let tunnel) = state else {
      close()
      return
    }
    writeLog(
      tunnel.log, status: 200, bytesIn: tunnel.bytesUp, bytesOut: tunnel.bytesDown, error: nil)
    if clientClosed || output.isEmpty {
      close()
    } else {
      enter(.closing)
      flush()
    }
  }
}

/// CONNECT on an `intercept` route: credproxy answers `200`, terminates the caller's TLS with a
/// leaf from the local CA for the target, and reads the requests inside like plain ones (routed
/// on their own path and method, bound to the CONNECT's host, credential injected upstream).
extension ProxyConnection {
  func beginIntercept(
    target: Authority, port: Int, record start: LogContext, runtime: ProxyRuntime
  ) {
    var record = start
    record.via = "intercept"
    // The leaf names the host as routing sees it (lowercase, no trailing dot or brackets).
    let canonical = CanonicalHost(target.host)
    let leaf: TLSServerContext
    switch runtime.interceptCertificates?.serverContext(forHost: String(canonical.text))
      ?? .failure(InterceptCertificateError(message: "no local CA is configured (ca-cert, ca-key)"))
    {
    case .success(let context):
      leaf = context
    case .failure(let error):
      record.deny(.credentialUnavailable)
      respond(
        ErrorResponse(
          code: .credentialUnavailable,
          message: "cannot intercept \(target.description): \(error.message)"),
        close: true, log: record)
      return
    }
    // The caller must wait for the 200 before its ClientHello; bytes already here would be
    // read as plain text.
    guard input.isEmpty else {
      record.deny(.badRequest)
      respond(
        ErrorResponse(code: .badRequest, message: "bytes sent before 200 Connection established"),
        close: true, log: record)
      return
    }
    intercept = InterceptSession(
      host: String(canonical.text), port: port, isIPv6: target.isIPv6, client: record.client,
      clientClaims: record.clientClaims)
    pendingTLS = leaf
    writeLog(record, status: 200, bytesIn: 0, bytesOut: 0, error: nil)
    output.append("HTTP/1.1 200 Connection established\r\n\r\n")
    enter(.idle)
    lastActivityMs = EventLoop.nowMs()
    flush()
  }
}
