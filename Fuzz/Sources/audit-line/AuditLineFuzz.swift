// Audit-log lines as `credproxy report` reads them: `AuditEntry.parse` (a hand-written flat-JSON
// reader) on arbitrary bytes, and against what `AuditFormatter` writes.
//
// Property: the reader never crashes, and it reads back exactly what the writer wrote. The input
// is split at NUL bytes into client, method, host, path, reason and scopes (any bytes: invalid
// UTF-8, quotes, backslashes, control characters, U+2028), a record is written with them, and
// the parsed entry must hold the same strings, route, port and status.
import AuditReport
import EgressPolicy
import FuzzSupport

@main enum AuditLineFuzz {
  static func main() { runFuzzer(fuzz) }
}

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = fuzzBytes(data, size)
  _ = bytes.withUnsafeBufferPointer { AuditEntry.parse($0) }

  let parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map {
    String(decoding: $0, as: UTF8.self)
  }
  func part(_ i: Int) -> String { i < parts.count ? parts[i] : "" }
  let n = bytes.count
  var record = AuditRecord(
    time: 1_795_701_600 + Double(n), client: parts.count > 1 ? part(0) : nil, source: "10.0.0.1:1",
    method: part(1).isEmpty ? "GET" : part(1), scheme: "http", host: part(2),
    port: n % 3 == 0 ? nil : n,
    path: part(3), query: part(6), route: n % 2 == 0 ? nil : n / 2, decision: .deny,
    reason: part(4), status: 100 + n % 500)
  record.tokenScopes = parts.count > 5 ? part(5) : nil
  for logQueries in [false, true] {
    let line = AuditFormatter(logQueries: logQueries).jsonLine(record)
    let entry = Array(line.utf8).withUnsafeBufferPointer { AuditEntry.parse($0) }
    guard let entry else {
      fuzzCheck(false, "the reader refused a line the writer wrote: \(line)")
      return 0
    }
    fuzzCheck(
      entry.client == record.client && entry.method == record.method && entry.host == record.host
        && entry.path == record.path && entry.reason == record.reason
        && entry.scopes == record.tokenScopes && entry.route == record.route
        && entry.port == record.port && entry.status == record.status
        && entry.decision == "deny" && abs(entry.time - record.time) < 0.001,
      "wrote \(line), read \(entry)")
  }
  return 0
}
