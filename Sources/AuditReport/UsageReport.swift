import CredproxyConfig
import Foundation
import Wire

/// `credproxy report`: audit logs in, least-privilege report out (text or JSON), with a
/// tightened config as a unified diff against the current one.
public struct UsageReport {
  public var files: [String]
  public var collector: UsageCollector
  /// Files that could not be read to their end (the lines before the problem are counted).
  public var readErrors: [AuditReadError]
  public var config: ProxyConfig?
  public var proposal: ConfigProposal?
  /// The unified diff, with the config's inline secrets shown as `[redacted]`.
  public var diff: String
  /// Inline secrets of the config: never printed (`redacted`), so a diff that had one in its
  /// lines does not apply as printed (`--proposal FILE` writes the whole file instead).
  var inlineSecrets: [String] = []
  public static let redactedMark = "[redacted]"

  /// Reads every file (plain or gzip, in the order given) and builds the proposal when a config
  /// is given.
  public static func build(
    files: [String], since: Double?, config: ProxyConfig?, configText: String?
  ) -> UsageReport {
    let collector = UsageCollector(since: since)
    var errors: [AuditReadError] = []
    for path in files {
      do {
        var firstUnread: Int?
        let counts = try AuditLogReader.forEachNumberedLine(path: path) { line, number in
          guard !(AuditEntry.parse(line).map(collector.add) ?? false) else { return }
          collector.skippedLines += 1
          if firstUnread == nil { firstUnread = number }
        }
        collector.skippedLines += counts.tooLong
        if collector.firstSkipped == nil {
          if let n = counts.firstTooLong, n < firstUnread ?? Int.max {
            collector.firstSkipped =
              "\(path):\(n) (longer than \(AuditLogReader.maxLineBytes) bytes)"
          } else if let n = firstUnread {
            collector.firstSkipped = "\(path):\(n)"
          }
        }
      } catch {
        errors.append(error)
      }
    }
    var proposal: ConfigProposal?
    var diff = ""
    var secrets: [String] = []
    if let config, let configText {
      secrets = ConfigLayout.inlineSecrets(configText, config: config)
      let p = Tightening.propose(
        config: config, text: configText, usage: collector, window: windowPhrase(collector))
      let name = config.sourcePath
      diff = UnifiedDiff.make(
        old: configText, new: p.text, oldName: name, newName: name + " (proposed)")
      proposal = p
    }
    var report = UsageReport(
      files: files, collector: collector, readErrors: errors, config: config, proposal: proposal,
      diff: diff)
    report.inlineSecrets = secrets
    report.diff = report.redacted(diff)
    return report
  }

  /// `text` with every inline secret of the config replaced by `[redacted]`.
  public func redacted(_ text: String) -> String {
    var out = text
    for secret in inlineSecrets {
      out = out.replacingOccurrences(of: secret, with: Self.redactedMark)
    }
    return out
  }

  /// Whether the printed diff lost an inline secret to redaction (then it does not apply as is).
  public var diffRedacted: Bool { !inlineSecrets.isEmpty && diff.contains(Self.redactedMark) }

  static func time(_ t: Double) -> String {
    t.isFinite
      ? UTCTimestamp.iso8601(wholeSeconds: Int64(t.rounded(.down)), milliseconds: nil) : "-"
  }

  static func windowPhrase(_ c: UsageCollector) -> String {
    c.records == 0 ? "in the logs read" : "from \(time(c.first)) to \(time(c.last))"
  }

  static func counts(_ d: [String: Int]) -> String {
    d.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
      .map { "\(Printable.text($0.key)) \($0.value)" }.joined(separator: ", ")
  }

  func routeLabel(_ number: Int?) -> String {
    guard let number else { return "no route" }
    if let config, number >= 1, number <= config.routes.count {
      return "route #\(number) \(config.routes[number - 1].name)"
    }
    return "route #\(number)"
  }

  // MARK: text

  /// The report for a person. Every string that came from a log goes through `Printable.text`:
  /// a log is input, and a client name or path holding escape sequences or newlines must not
  /// drive the terminal or forge report lines.
  public func text() -> String {
    let c = collector
    var out =
      "credproxy report: \(files.count) file\(files.count == 1 ? "" : "s"), \(c.records) records"
    if c.records > 0 { out += " \(Self.windowPhrase(c))" }
    var extra: [String] = []
    if c.beforeWindow > 0 { extra.append("\(c.beforeWindow) before --since") }
    if c.skippedLines > 0 {
      extra.append(
        "\(c.skippedLines) lines not audit records"
          + (c.firstSkipped.map { ", the first at \($0)" } ?? ""))
    }
    if c.overflowRecords > 0 {
      extra.append(
        "\(c.overflowRecords) records of client/route pairs past the first \(UsageCollector.maxPairs) counted but not itemised"
      )
    }
    if !extra.isEmpty { out += " (" + extra.joined(separator: ", ") + ")" }
    out += "\n"
    for e in readErrors { out += "warning: \(e)\n" }
    for client in c.clients {
      let routes = c.routes(of: client)
      let first = routes.map(\.usage.first).min() ?? 0
      let last = routes.map(\.usage.last).max() ?? 0
      out +=
        "\nclient \(client.map(Printable.text) ?? "(anonymous)")  first \(Self.time(first))  last \(Self.time(last))\n"
      for (number, u) in routes {
        let denied = u.denials.values.reduce(0, +)
        out += "  \(routeLabel(number)): \(u.requests) request\(u.requests == 1 ? "" : "s")"
        if denied > 0 { out += ", \(denied) denied (\(Self.counts(u.denials)))" }
        if !u.wouldDeny.isEmpty { out += ", report mode would deny \(Self.counts(u.wouldDeny))" }
        out += "\n"
        if !u.methods.isEmpty { out += "    methods: \(Self.counts(u.methods))\n" }
        out += "    first \(Self.time(u.first))  last \(Self.time(u.last))\n"
        for (hp, tree) in u.paths.sorted(by: { $0.key < $1.key }) {
          out += "    \(hp)  (\(tree.count))\n"
          // A tunnel (or only `/`) has no path worth a line of its own.
          for line in tree.collapsed(fanout: Tightening.fanout).lines() where !tree.children.isEmpty
          {
            out +=
              String(repeating: "  ", count: line.depth + 3)
              + "\(Printable.text(line.path))  (\(line.count))\n"
          }
        }
        if !u.refusedHosts.isEmpty { out += "    refused: \(Self.counts(u.refusedHosts))\n" }
        for (s, n) in u.scopeSets.sorted(by: { $0.key < $1.key }) {
          out += "    OAuth2 scopes: \(Printable.text(s))  (\(n))\n"
        }
        for (a, n) in u.audiences.sorted(by: { $0.key < $1.key }) {
          out += "    OIDC audience: \(Printable.text(a))  (\(n))\n"
        }
      }
    }
    guard let proposal else {
      out += "\n(no config read: pass --config PATH for unused routes and a tightened config)\n"
      return out
    }
    if !proposal.unusedRoutes.isEmpty || !proposal.unusedClients.isEmpty {
      out += "\nunused \(Self.windowPhrase(c)):\n"
      for n in proposal.unusedRoutes {
        out += "  \(routeLabel(n)) (line \(config!.routes[n - 1].line))\n"
      }
      for name in proposal.unusedClients {
        out += "  client \(name) (line \(config!.client(named: name)?.line ?? 0))\n"
      }
    }
    out += "\nproposed changes:\n"
    if proposal.changes.isEmpty { out += "  none: the config allows only what was used\n" }
    for change in proposal.changes { out += "  \(change)\n" }
    if let errors = proposal.validationErrors {
      out += "\nthe proposal does NOT pass `credproxy check` (a bug: please report it):\n"
      out += redacted(errors) + "\n"
    } else if !diff.isEmpty {
      out += "\ntightened config (unified diff; passes `credproxy check`):\n"
    }
    if diffRedacted {
      out += "(the config holds inline secrets, shown as [redacted]: this diff does not apply as"
      out += " printed; write the proposal with --proposal FILE, or move them to env: or file:)\n"
    }
    out += diff
    return out
  }

  // MARK: JSON

  public func json() -> String {
    let c = collector
    var o = JSONWriter()
    o.open("{")
    o.key("files")
    o.open("[")
    for f in files { o.string(f) }
    o.close("]")
    o.key("records")
    o.raw(String(c.records))
    o.key("before_since")
    o.raw(String(c.beforeWindow))
    o.key("skipped_lines")
    o.raw(String(c.skippedLines))
    if let first = c.firstSkipped {
      o.key("first_skipped")
      o.string(first)
    }
    o.key("overflow_records")
    o.raw(String(c.overflowRecords))
    o.key("first")
    o.time(c.first)
    o.key("last")
    o.time(c.last)
    o.key("read_errors")
    o.open("[")
    for e in readErrors { o.string(e.description) }
    o.close("]")
    o.key("clients")
    o.open("[")
    for client in c.clients {
      o.open("{")
      o.key("client")
      if let client { o.string(client) } else { o.raw("null") }
      o.key("routes")
      o.open("[")
      for (number, u) in c.routes(of: client) {
        o.open("{")
        o.key("route")
        o.raw(number.map(String.init) ?? "null")
        o.key("name")
        if let number, let config, number <= config.routes.count {
          o.string(config.routes[number - 1].name)
        } else {
          o.raw("null")
        }
        o.key("requests")
        o.raw(String(u.requests))
        o.key("denials")
        o.counts(u.denials)
        o.key("report_would_deny")
        o.counts(u.wouldDeny)
        o.key("methods")
        o.counts(u.methods)
        o.key("first")
        o.time(u.first)
        o.key("last")
        o.time(u.last)
        o.key("hosts")
        o.open("[")
        for (hp, tree) in u.paths.sorted(by: { $0.key < $1.key }) {
          o.open("{")
          o.key("host")
          o.string(hp.description)
          o.key("requests")
          o.raw(String(tree.count))
          o.key("paths")
          o.open("[")
          for e in tree.collapsed(fanout: Tightening.fanout).endpoints() {
            o.string("/" + e.joined(separator: "/"))
          }
          o.close("]")
          o.close("}")
        }
        o.close("]")
        o.key("refused_hosts")
        o.counts(u.refusedHosts)
        o.key("oauth2_scope_sets")
        o.counts(u.scopeSets)
        o.key("oidc_audiences")
        o.counts(u.audiences)
        o.close("}")
      }
      o.close("]")
      o.close("}")
    }
    o.close("]")
    if let proposal {
      o.key("unused_routes")
      o.open("[")
      for n in proposal.unusedRoutes { o.raw(String(n)) }
      o.close("]")
      o.key("unused_clients")
      o.open("[")
      for n in proposal.unusedClients { o.string(n) }
      o.close("]")
      o.key("changes")
      o.open("[")
      for ch in proposal.changes { o.string(ch) }
      o.close("]")
      o.key("proposal_valid")
      o.raw(proposal.validationErrors == nil ? "true" : "false")
      o.key("proposal_errors")
      if let e = proposal.validationErrors { o.string(redacted(e)) } else { o.raw("null") }
      o.key("diff")
      o.string(diff)
      o.key("diff_redacted")
      o.raw(diffRedacted ? "true" : "false")
      o.key("proposed_config")
      o.string(redacted(proposal.text))
    }
    o.close("}")
    return o.out + "\n"
  }
}

/// A small JSON writer: commas placed by nesting level.
struct JSONWriter {
  var out = ""
  var needComma = [false]

  mutating func comma() {
    if needComma[needComma.count - 1] { out += "," }
    needComma[needComma.count - 1] = true
  }
  mutating func open(_ c: String) {
    comma()
    out += c
    needComma.append(false)
  }
  mutating func close(_ c: String) {
    out += c
    needComma.removeLast()
  }
  mutating func key(_ k: String) {
    comma()
    JSONText.appendQuoted(k, to: &out)
    out += ":"
    needComma[needComma.count - 1] = false
  }
  mutating func raw(_ s: String) {
    comma()
    out += s
  }
  mutating func string(_ s: String) {
    comma()
    JSONText.appendQuoted(s, to: &out)
  }
  mutating func time(_ t: Double) {
    if t.isFinite { string(UTCTimestamp.iso8601(t)) } else { raw("null") }
  }
  mutating func counts(_ d: [String: Int]) {
    open("{")
    for (k, v) in d.sorted(by: { $0.key < $1.key }) {
      key(k)
      raw(String(v))
    }
    close("}")
  }
}
