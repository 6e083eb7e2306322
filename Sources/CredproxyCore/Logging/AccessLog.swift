import CredproxyConfig
import EgressPolicy
import Glibc

/// One finished request, as the access log records it. The query string is never kept: it can
/// carry secrets (`?key=…`, signed URLs).
struct AccessRecord {
  var client: String
  var method: String
  var host: String
  var path: String
  var route: String
  var status: Int
  var bytesIn: UInt64
  var bytesOut: UInt64
  var durationMs: Int64
  var error: String?
}

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

  func write(_ r: AccessRecord) {
    guard enabled else { return }
    var line: String
    let time = Log.timestamp()
    switch format {
    case .text:
      line =
        "\(time) \(r.client) \"\(r.method) \(r.host) \(r.path)\" route=\(r.route) status=\(r.status)"
        + " in=\(r.bytesIn) out=\(r.bytesOut) dur_ms=\(r.durationMs)"
      if let e = r.error { line += " error=\(e)" }
    case .json:
      line =
        "{\"time\":\(json(time)),\"client\":\(json(r.client)),\"method\":\(json(r.method)),"
        + "\"host\":\(json(r.host)),\"path\":\(json(r.path)),\"route\":\(json(r.route)),"
        + "\"status\":\(r.status),\"bytes_in\":\(r.bytesIn),\"bytes_out\":\(r.bytesOut),"
        + "\"duration_ms\":\(r.durationMs)"
      if let e = r.error { line += ",\"error\":\(json(e))" }
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

  /// RFC 3339 UTC with milliseconds.
  static func timestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var t = ts.tv_sec
    var parts = tm()
    gmtime_r(&t, &parts)
    func pad(_ v: Int32, _ width: Int = 2) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T"
      + "\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec))."
      + "\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
  }
}

/// A JSON string literal.
func json(_ s: String) -> String {
  var out = "\""
  for u in s.unicodeScalars {
    switch u {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\r": out += "\\r"
    case "\t": out += "\\t"
    default:
      if u.value < 0x20 {
        let hex = String(u.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      } else {
        out.unicodeScalars.append(u)
      }
    }
  }
  return out + "\""
}
