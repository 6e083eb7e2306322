import CredproxyConfig
import EgressPolicy
import Glibc
import Wire

/// Writes access lines (text or JSON) with one write(2) each, so lines from several loop threads
/// never interleave.
final class AccessLog: Sendable {
  private let fd: Int32
  private let format: LogFormat
  private let enabled: Bool

  init(target: AccessLogTarget, format: LogFormat) throws(SocketError) {
    self.format = format
    switch target {
    case .off:
      fd = -1
      enabled = false
    case .stderr:
      fd = 2
      enabled = true
    case .file(let path):
      let f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
      guard f >= 0 else { throw SocketError("cannot open access log \(path)") }
      fd = f
      enabled = true
    }
  }

  deinit {
    if fd > 2 { close(fd) }
  }

  /// One line per finished request: time, client address, method, host, path (never the
  /// query: it can carry secrets), route, status, bytes in and out, duration, error code.
  func write(
    _ r: LogContext, client: String, status: Int, bytesIn: UInt64, bytesOut: UInt64,
    durationMs: Int64, error: ErrorCode?
  ) {
    guard enabled else { return }
    var line: String
    let time = Log.timestamp()
    switch format {
    case .text:
      line =
        "\(time) \(client) \"\(r.method) \(r.host) \(r.path)\" route=\(r.route) status=\(status)"
        + " in=\(bytesIn) out=\(bytesOut) dur_ms=\(durationMs)"
      if let e = error { line += " error=\(e)" }
      if let via = r.via { line += " via=\(via)" }
    case .json:
      line =
        "{\"time\":\(JSONText.quoted(time)),\"client\":\(JSONText.quoted(client)),"
        + "\"method\":\(JSONText.quoted(r.method)),\"host\":\(JSONText.quoted(r.host)),"
        + "\"path\":\(JSONText.quoted(r.path)),\"route\":\(JSONText.quoted(r.route)),"
        + "\"status\":\(status),\"bytes_in\":\(bytesIn),\"bytes_out\":\(bytesOut),"
        + "\"duration_ms\":\(durationMs)"
      if let e = error { line += ",\"error\":\(JSONText.quoted(e.rawValue))" }
      if let via = r.via { line += ",\"via\":\(JSONText.quoted(via))" }
      line += "}"
    }
    line += "\n"
    Log.writeAll(fd, line)
  }
}

/// The audit trail (`audit-log PATH`): one JSON line per decision, allowed, denied or reported.
final class AuditLog: Sendable {
  private let fd: Int32
  private let formatter: AuditFormatter

  init?(target: AccessLogTarget, logQueries: Bool) throws(SocketError) {
    formatter = AuditFormatter(logQueries: logQueries)
    switch target {
    case .off:
      return nil
    case .stderr:
      fd = 2
    case .file(let path):
      let f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
      guard f >= 0 else { throw SocketError("cannot open audit log \(path)") }
      fd = f
    }
  }

  deinit {
    if fd > 2 { close(fd) }
  }

  func write(_ record: AuditRecord) {
    Log.writeAll(fd, formatter.jsonLine(record) + "\n")
  }
}

/// Operational messages to stderr (startup, failures). Never given a secret.
enum Log {
  static func info(_ message: String) { writeAll(2, "credproxy: \(message)\n") }

  static func writeAll(_ fd: Int32, _ text: String) {
    var s = text
    s.withUTF8 { buf in
      var offset = 0
      while offset < buf.count {
        let n = Glibc.write(fd, buf.baseAddress! + offset, buf.count - offset)
        if n <= 0 {
          if n < 0 && errno == EINTR { continue }
          return
        }
        offset += n
      }
    }
  }

  /// Now, RFC 3339 UTC with milliseconds (truncated).
  static func timestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UTCTimestamp.iso8601(
      wholeSeconds: Int64(ts.tv_sec), milliseconds: Int(ts.tv_nsec / 1_000_000))
  }
}
