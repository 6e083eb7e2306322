import CredproxyConfig
import Wire

/// A tightened config proposed from what the audit log shows was used, as the full text of the
/// new file plus what changed. Only routes and clients are touched; everything else, comments
/// included, stays as written.
public struct ConfigProposal: Sendable {
  public var text: String
  /// One line per change, for the report.
  public var changes: [String]
  /// Routes (1-based) and clients that nothing used in the window; flagged in the text with a
  /// comment, never removed.
  public var unusedRoutes: [Int]
  public var unusedClients: [String]
  /// nil when the proposed text passes the config parser (what `credproxy check` runs);
  /// otherwise its diagnostics.
  public var validationErrors: String?
}

/// Builds the proposal:
/// - `methods` narrowed to the methods used;
/// - a route without a path prefix or with a wildcard host is split into routes for the exact
///   hosts and path prefixes used (at most `prefixSegments` segments, cut at the first segment
///   the log shows varying), grouped by the clients that used them; a `deny` route with the
///   original patterns follows, so what the wide route matched and nobody used is refused rather
///   than falling through to a later route;
/// - `allow` cut to the clients that used the route (when clients are defined);
/// - routes and clients unused in the window flagged with a comment.
/// `tunnel` and `intercept` routes keep their patterns (a CONNECT matches host and port only);
/// `deny` routes are left alone.
public enum Tightening {
  public static let fanout = 4
  public static let prefixSegments = 3
  public static let maxHostsPerWildcard = 16
  static let mark = "# credproxy report:"

  public static func propose(
    config: ProxyConfig, text: String, usage: UsageCollector, window: String
  ) -> ConfigProposal {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let endsWithNewline = lines.last == ""
    if endsWithNewline { lines.removeLast() }
    let blocks = ConfigLayout.blocks(text)
    var replacements: [(start: Int, end: Int, lines: [String])] = []
    var changes: [String] = []
    var unusedRoutes: [Int] = []

    for (index, route) in config.routes.enumerated() {
      let number = index + 1
      guard let block = blocks.first(where: { $0.keyword == "route" && $0.startLine == route.line })
      else { continue }
      let original = Array(lines[(block.startLine - 1)...(block.endLine - 1)])
      let used = usage.clients.compactMap { client -> (String?, RouteUsage)? in
        guard let u = usage.usage[UsageKey(client: client, route: number)], u.used else {
          return nil
        }
        // Only what the route allows is evidence of use: a forged line, or a log from a config
        // whose route numbers meant other routes, must not widen the route.
        // (With clients defined, no caller is anonymous.)
        if let allow = route.allow, !(client.map(allow.contains) ?? false) { return nil }
        if client == nil && !config.clients.isEmpty { return nil }
        return (client, u)
      }
      if route.deny { continue }
      if used.isEmpty {
        unusedRoutes.append(number)
        changes.append("route #\(number) \(route.name): unused \(window) (flagged)")
        replacements.append(
          (
            block.startLine, block.endLine,
            ["\(mark) route #\(number) had no requests \(window); remove it if nothing needs it"]
              + original
          ))
        continue
      }
      guard block.startLine != block.endLine else { continue }
      let narrowed = narrowedDirectives(route: route, config: config, used: used)
      let body = bodyLines(lines, block)
      let indent = body.indent
      if !route.tunnel && !route.intercept,
        let groups = split(route: route, config: config, used: used)
      {
        let was = route.patterns.map(\.description).joined(separator: " ")
        var out = [
          "\(mark) route #\(number) (\(was)) split into the hosts and paths used \(window)"
        ]
        for g in groups {
          out.append("route \(g.patterns.joined(separator: " ")) {")
          out += body.kept
          if let m = g.methods { out.append("\(indent)methods \(methodWords(m))") }
          if let a = g.allow { out.append("\(indent)allow \(a.joined(separator: " "))") }
          out.append("}")
          var what = "route #\(number) \(route.name): \(g.patterns.joined(separator: " "))"
          if let a = g.allow { what += " for \(a.joined(separator: " "))" }
          if let m = g.methods { what += ", methods \(m.joined(separator: " "))" }
          changes.append(what)
        }
        out += ["\(mark) the rest of what route #\(number) matched is refused", "route \(was) {"]
        // A route still rolling out in report mode keeps reporting, not refusing.
        if route.mode == .report { out.append("\(indent)mode report") }
        out += ["\(indent)deny", "}"]
        changes.append("route #\(number) \(route.name): the rest refused (deny route added)")
        replacements.append((block.startLine, block.endLine, out))
        continue
      }
      guard narrowed.methods != nil || narrowed.allow != nil else { continue }
      var notes: [String] = []
      var newLines: [String] = []
      if let m = narrowed.methods {
        newLines.append("\(indent)methods \(methodWords(m))")
        notes.append(
          "methods \(m.joined(separator: " ")) (was \(route.methods.map { $0.sorted().joined(separator: " ") } ?? "any"))"
        )
      }
      if let a = narrowed.allow {
        newLines.append("\(indent)allow \(a.joined(separator: " "))")
        notes.append(
          "allow \(a.joined(separator: " ")) (was \(route.allow?.joined(separator: " ") ?? "every client"))"
        )
      }
      var out = ["\(mark) route #\(number) narrowed to what was used \(window)", original[0]]
      var inserted = false
      for (k, line) in original.enumerated().dropFirst() {
        let lineNumber = block.startLine + k
        if body.replaced.contains(lineNumber) {
          if !inserted { out += newLines }
          inserted = true
          continue
        }
        if lineNumber == block.endLine && !inserted { out += newLines }
        out.append(line)
      }
      replacements.append((block.startLine, block.endLine, out))
      changes.append("route #\(number) \(route.name): " + notes.joined(separator: ", "))
    }

    var unusedClients: [String] = []
    for client in config.clients
    where !usage.usage.contains(where: { $0.key.client == client.name && $0.value.used }) {
      unusedClients.append(client.name)
      changes.append(
        "client \(client.name): used no route \(window) (flagged; left out of every allow list)")
      guard
        let block = blocks.first(where: { $0.keyword == "client" && $0.startLine == client.line })
      else { continue }
      replacements.append(
        (
          block.startLine, block.startLine,
          ["\(mark) client \(client.name) used no route \(window)", lines[block.startLine - 1]]
        ))
    }

    for r in replacements.sorted(by: { $0.start > $1.start }) {
      lines.replaceSubrange((r.start - 1)...(r.end - 1), with: r.lines)
    }
    var newText = lines.joined(separator: "\n")
    if endsWithNewline { newText += "\n" }
    var errors: String?
    do {
      _ = try ConfigParser.parse(text: newText, path: config.sourcePath)
    } catch {
      errors = "\(error)"
    }
    return ConfigProposal(
      text: newText, changes: changes, unusedRoutes: unusedRoutes, unusedClients: unusedClients,
      validationErrors: errors)
  }

  /// The route's `methods` and `allow` as the log says they could be; nil where nothing would
  /// get narrower.
  static func narrowedDirectives(route: Route, config: ProxyConfig, used: [(String?, RouteUsage)])
    -> (methods: [String]?, allow: [String]?)
  {
    var methods: [String]?
    if !route.tunnel {
      let m = withinRoute(Set(used.flatMap { $0.1.methods.keys }), route)
      if !m.isEmpty && (route.methods == nil || route.methods! != m) {
        methods = orderedMethods(m)
      }
    }
    var allow: [String]?
    if !config.clients.isEmpty {
      let names = Set(used.compactMap(\.0))
      let a = config.clients.map(\.name).filter { names.contains($0) }
      if !a.isEmpty && (route.allow == nil || Set(route.allow!) != Set(a)) { allow = a }
    }
    return (methods, allow)
  }

  /// The methods used that the route allows (a log line may claim any), CONNECT aside.
  static func withinRoute(_ methods: Set<String>, _ route: Route) -> Set<String> {
    let m = methods.subtracting(["CONNECT"])
    return route.methods.map { m.intersection($0) } ?? m
  }

  /// Methods as config words: an HTTP token may hold `#`, which the config lexer reads as the
  /// start of a comment unless it is quoted.
  static func methodWords(_ methods: [String]) -> String {
    methods.map { $0.contains("#") ? "\"\($0)\"" : $0 }.joined(separator: " ")
  }

  static func orderedMethods(_ m: Set<String>) -> [String] {
    let usual = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return usual.filter { m.contains($0) } + m.subtracting(usual).sorted()
  }

  struct Body {
    /// The block's inner lines without its `methods` and `allow` directives.
    var kept: [String]
    /// Lines of the `methods` and `allow` directives.
    var replaced: Set<Int>
    var indent: String
  }

  static func bodyLines(_ lines: [String], _ block: ConfigBlock) -> Body {
    let replaced = Set(
      block.directives.filter { $0.name == "methods" || $0.name == "allow" }.map(\.line))
    var kept: [String] = []
    if block.endLine - block.startLine >= 2 {
      for n in (block.startLine + 1)...(block.endLine - 1) where !replaced.contains(n) {
        kept.append(lines[n - 1])
      }
    }
    var indent = "  "
    if let first = block.directives.first {
      indent = String(lines[first.line - 1].prefix { $0 == " " || $0 == "\t" })
    }
    return Body(kept: kept, replaced: replaced, indent: indent)
  }

  struct Group {
    var patterns: [String]
    var allow: [String]?
    var methods: [String]?
  }

  /// The route split into the exact hosts and path prefixes used, grouped by the clients that
  /// used them; nil when that would not be narrower, or when a used path cannot be placed under
  /// one of the route's patterns (then the route keeps its patterns).
  static func split(route: Route, config: ProxyConfig, used: [(String?, RouteUsage)]) -> [Group]? {
    // One single-pattern route per pattern: the router says which pattern a path came in by.
    let singles = route.patterns.map { p -> Route in
      var r = Route(name: p.description, patterns: [p], line: route.line)
      r.upstream = route.upstream
      return r
    }
    let router = Router(routes: singles)
    struct Candidate: Hashable {
      var pattern: Int
      var host: HostPort
      var prefix: [String]
    }
    var perClient: [(client: String?, usage: RouteUsage, candidates: Set<Candidate>)] = []
    var hostsPerPattern: [Int: Set<String>] = [:]
    for (client, u) in used {
      var candidates = Set<Candidate>()
      for (hp, tree) in u.paths {
        for endpoint in tree.collapsed(fanout: fanout).endpoints() {
          let path = "/" + endpoint.joined(separator: "/")
          guard
            case .forward(let m) = router.decide(
              method: "GET", host: hp.host, explicitPort: hp.port, path: path)
          else { return nil }
          let p0 = route.patterns[m.index]
          let p0Segments = (p0.pathPrefix ?? "").split(separator: "/").map(String.init)
          var literal: [String] = []
          for s in endpoint {
            guard s != PathTree.wildcard, isPlainSegment(s) else { break }
            literal.append(s)
          }
          var prefix = Array(literal.prefix(max(prefixSegments, p0Segments.count)))
          if prefix.count < p0Segments.count || Array(prefix.prefix(p0Segments.count)) != p0Segments
          {
            prefix = p0Segments
          }
          candidates.insert(Candidate(pattern: m.index, host: hp, prefix: prefix))
          hostsPerPattern[m.index, default: []].insert(hp.host)
        }
      }
      perClient.append((client, u, candidates))
    }
    func patternText(_ c: Candidate) -> (host: String, prefix: [String]) {
      let p0 = route.patterns[c.pattern]
      var host: String
      if case .exact = p0.host {
        host = RoutePattern(host: p0.host, port: nil, pathPrefix: nil).description
      } else if (hostsPerPattern[c.pattern]?.count ?? 0) > maxHostsPerWildcard {
        host = RoutePattern(host: p0.host, port: nil, pathPrefix: nil).description
      } else {
        host = HostPort(host: c.host.host, port: nil).description
      }
      if let port = p0.port { host += ":\(port)" }
      return (host, c.prefix)
    }
    // Every pattern used, then only those no other one covers (same host, shorter prefix).
    var all = Set<[String]>()
    for (_, _, cs) in perClient {
      for c in cs { let t = patternText(c); all.insert([t.host] + t.prefix) }
    }
    func covers(_ a: [String], _ b: [String]) -> Bool {
      a[0] == b[0] && a.count <= b.count && Array(b.prefix(a.count)) == a
    }
    let minimal = all.filter { p in !all.contains { $0 != p && covers($0, p) } }
    func text(_ p: [String]) -> String {
      p.count == 1 ? p[0] : p[0] + "/" + p.dropFirst().joined(separator: "/")
    }
    var clientsOf: [[String]: Set<String>] = [:]
    var methodsOf: [String: Set<String>] = [:]
    for (client, u, cs) in perClient {
      let name = client ?? ""
      methodsOf[name, default: []].formUnion(u.methods.keys)
      for c in cs {
        let t = patternText(c)
        let full = [t.host] + t.prefix
        guard let cover = minimal.first(where: { covers($0, full) }) else { continue }
        clientsOf[cover, default: []].insert(name)
      }
    }
    var groups: [Set<String>: [[String]]] = [:]
    for (p, clients) in clientsOf { groups[clients, default: []].append(p) }
    let original = Set(route.patterns.map(\.description))
    if groups.count == 1, let only = groups.first,
      Set(only.value.map(text)) == original || only.value.count > 32
    {
      return nil
    }
    let clientOrder = config.clients.map(\.name)
    return groups.map { clients, patterns -> Group in
      let names = clients.sorted {
        (clientOrder.firstIndex(of: $0) ?? Int.max, $0) < (
          clientOrder.firstIndex(of: $1) ?? Int.max, $1
        )
      }
      let m = withinRoute(Set(names.flatMap { methodsOf[$0] ?? [] }), route)
      return Group(
        patterns: patterns.map(text).sorted(),
        allow: config.clients.isEmpty ? route.allow : names.filter { !$0.isEmpty },
        methods: m.isEmpty ? route.methods.map { orderedMethods($0) } : orderedMethods(m))
    }.sorted { $0.patterns.first ?? "" < $1.patterns.first ?? "" }
  }

  /// A segment a route prefix may hold as written: unreserved characters only (no escapes,
  /// no `;`, not `.` or `..`), so it reads the same in every form the router compares.
  static func isPlainSegment(_ s: String) -> Bool {
    guard s != "." && s != ".." && !s.isEmpty else { return false }
    return s.utf8.allSatisfy {
      ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
        || $0 == 0x2D || $0 == 0x2E || $0 == 0x5F || $0 == 0x7E
    }
  }
}
