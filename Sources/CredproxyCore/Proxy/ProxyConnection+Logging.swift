import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

/// Every finished decision: the access log, the audit log, metrics and recent denials.
extension ProxyConnection {
  func logExchange(_ ex: Exchange, status: Int, error: ErrorCode?) {
    writeLog(ex.log, status: status, bytesIn: ex.bytesIn, bytesOut: ex.bytesOut, error: error)
  }

  func writeLog(
    _ log: LogContext, status: Int, bytesIn: UInt64, bytesOut: UInt64, error: ErrorCode?
  ) {
    let runtime = context.runtime
    let durationMs = EventLoop.nowMs() - log.startedMs
    runtime.accessLog.write(
      log, client: clientAddress, status: status, bytesIn: bytesIn, bytesOut: bytesOut,
      durationMs: durationMs, error: error)
    runtime.metrics.recordRequest(
      routeIndex: log.routeNumber.map { $0 - 1 }, status: status, client: log.client,
      durationSeconds: Double(durationMs) / 1000, bytesIn: bytesIn, bytesOut: bytesOut)
    runtime.live.record(
      routeIndex: log.routeNumber.map { $0 - 1 }, client: log.client,
      failed: error != nil || status >= 500, durationMs: Double(durationMs),
      shard: context.loop.index)
    var decision = log.decision
    var reason = log.reason
    if decision == .allow, let error, status >= 400 {
      // Refused by us after routing (limits, parse errors) or failed upstream: still a decision.
      if status < 500 || error == .blockedAddress { decision = .deny }
      reason = error
    }
    if decision != .allow, let reason {
      runtime.metrics.denial(reason)
      context.denials.record(
        DenialLog.Entry(
          time: TokenBroker.now(), client: log.client, host: log.host, code: reason))
    }
    if let error, error.isUpstreamFailure {
      runtime.metrics.upstreamError(error)
    }
    // Built only when an audit log is configured: this runs for every request.
    if let audit = runtime.audit {
      var record = AuditRecord(
        time: TokenBroker.now(), client: log.client, source: clientAddress, method: log.method,
        scheme: log.scheme, host: log.hostName, port: log.port, path: log.path, query: log.query,
        route: log.routeNumber, decision: decision, reason: reason?.rawValue,
        credential: log.credential,
        tokenFingerprint: log.tokenFingerprint, status: status, bytesIn: bytesIn,
        bytesOut: bytesOut, durationMs: Double(durationMs))
      record.via = log.via
      record.tokenScopes = log.tokenScopes
      record.tokenAudience = log.tokenAudience
      record.clientClaims = log.clientClaims
      audit.write(record)
    }
  }
}
