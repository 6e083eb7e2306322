import AuditReport
import CredproxyConfig
import Foundation
import Glibc
import Wire

// `credproxy report`: what clients actually used, from audit logs, and a tightened config.

let reportUsage = """
  usage: credproxy report [--config PATH] [--since D] [--format text|json] [--proposal FILE]
                          AUDIT.jsonl…

  Reads audit logs (audit-log PATH; rotated ones too, plain or gzip-compressed, detected by
  content; `-` is stdin), streaming, and prints for each client and route: requests, denials by
  reason, methods, the hosts and path prefixes used as a short tree (/storage/v1/b/*/o), the
  OAuth2 scope sets and OIDC audiences minted, first and last seen.
  With a config (--config PATH, else ./proxy.conf when it exists) it also lists routes and
  clients unused in the window and proposes a tightened config: methods narrowed to those used,
  wide routes split into the hosts and path prefixes used (the rest refused), allow lists cut to
  the clients that used each route. The proposal is printed as a unified diff against the config
  (apply it with `patch PATH`) and is checked with the config parser before it is shown.
  --since D        only records newer than D ago (30m, 24h, 7d) or since a time
                   (2026-11-30 or 2026-11-30T12:00:00Z)
  --format json    one JSON object (the report, the diff and the proposed config) for machines
  --proposal FILE  also write the whole proposed config to FILE (mode 0600); inline secrets of
                   the config are printed as [redacted], never in the clear
  Exit 0; 1 when a log could not be read to its end; 2 on usage or config errors.
  """

func parseSince(_ text: String, now: Double) -> Double? {
  if let t = UTCTimestamp.parse(text) { return t }
  let digits = text.prefix { $0.isASCII && $0.isNumber }
  guard let n = Double(digits), n > 0 else { return nil }
  let factor: Double
  switch text.dropFirst(digits.count) {
  case "s": factor = 1
  case "m": factor = 60
  case "h": factor = 3600
  case "d": factor = 86_400
  case "w": factor = 7 * 86_400
  default: return nil
  }
  return now - n * factor
}

func runReportCommand(_ args: [String]) -> Never {
  var rest = ArraySlice(args.dropFirst())
  var configPath: String?
  var since: Double?
  var json = false
  var proposalPath: String?
  var files: [String] = []
  func value(_ flag: String) -> String {
    guard let v = rest.popFirst() else { fail("credproxy: \(flag) needs a value", code: 2) }
    return v
  }
  while let arg = rest.popFirst() {
    switch arg {
    case "--help", "-h":
      print(reportUsage)
      exit(0)
    case "--config", "-c": configPath = value(arg)
    case "--since":
      let text = value(arg)
      guard let t = parseSince(text, now: Date().timeIntervalSince1970) else {
        fail(
          "credproxy: --since takes a duration (30m, 24h, 7d) or a time (2026-11-30T12:00:00Z), not \"\(text)\"",
          code: 2)
      }
      since = t
    case "--format":
      let f = value(arg)
      guard f == "json" || f == "text" else {
        fail("credproxy: --format takes text or json, not \"\(f)\"", code: 2)
      }
      json = f == "json"
    case "--json": json = true
    case "--proposal": proposalPath = value(arg)
    default:
      guard arg == "-" || !arg.hasPrefix("-") else {
        fail("credproxy: unexpected argument \"\(arg)\" for report\n\n\(reportUsage)", code: 2)
      }
      files.append(arg)
    }
  }
  guard !files.isEmpty else {
    fail("credproxy: report needs at least one audit log\n\n\(reportUsage)", code: 2)
  }
  if configPath == nil && FileManager.default.fileExists(atPath: "proxy.conf") {
    configPath = "proxy.conf"
  }
  var config: ProxyConfig?
  var configText: String?
  if let configPath {
    config = load(configPath)
    configText = try? String(contentsOfFile: configPath, encoding: .utf8)
  }
  let report = UsageReport.build(
    files: files, since: since, config: config, configText: configText)
  if let proposalPath, let proposal = report.proposal {
    // Mode 0600: the file is the whole config, inline secrets included.
    let fd = open(proposalPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    let bytes = Array(proposal.text.utf8)
    guard fd >= 0, fchmod(fd, 0o600) == 0,
      bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count
    else {
      fail("credproxy: cannot write \(proposalPath): \(String(cString: strerror(errno)))", code: 1)
    }
    close(fd)
  }
  let out = json ? report.json() : report.text()
  FileHandle.standardOutput.write(Data(out.utf8))
  for e in report.readErrors where json {
    FileHandle.standardError.write(Data("credproxy: \(e)\n".utf8))
  }
  exit(report.readErrors.isEmpty ? 0 : 1)
}
