import HTTP1
import Wire

/// The route a request matched. `index` is the 0-based position in `ProxyConfig.routes`;
/// messages call it `route #\(number)`.
public struct RouteMatch: Sendable {
  public let route: Route
  public let index: Int
  public init(route: Route, index: Int) {
    self.route = route
    self.index = index
  }
  /// 1-based, as `check` and `explain` print it.
  public var number: Int { index + 1 }
}

public enum RoutingDecision: Sendable {
  case forward(RouteMatch)
  /// 403 `no_route`, 403 `denied`, 405 `method_not_allowed`. `reason` is one line for the caller.
  case refuse(code: ErrorCode, reason: String, route: RouteMatch?)
}

/// The routing table: routes tried in file order, the first match wins, no match is refused.
///
/// Hosts are compared as the resolver would dial them: a trailing dot is ignored, IPv6 literals
/// are compared as addresses, and other spellings of an IPv4 address (`127.1`, `2130706433`,
/// `0x7f.0.0.1`) as the address they denote, all read by `CanonicalHost` (the SSRF checks read
/// hosts with it too). A `deny` route for an IPv4 address also matches the IPv6 addresses that
/// carry it (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`); an allow route only its
/// IPv4-mapped form.
///
/// Paths: deny matches broadly, allow matches narrowly. A `deny` pattern's prefix matches a
/// path that is under it in any reading: the RFC 3986 one (`PathNormalizer`: unreserved escapes
/// decoded, `.`/`..` applied, `//` merged) or the canonical one (`CanonicalPath`: all escapes
/// decoded, `%2F` and `\` split segments, `;params` cut, blanks and trailing dots trimmed,
/// case folded), so `/admin%2fx`, `/admin;x/y`, `/ADMIN`, `/admin%20/x` cannot slip past a rule
/// for `/admin`. An allow pattern's prefix matches only a path under it in both the RFC 3986
/// and the canonical reading (not folded or trimmed), and never one whose canonical reading has
/// a dot-segment (`/public/..;/admin`) or still decodes after four passes.
public struct Router: Sendable {
  private let routes: [CompiledRoute]

  public init(routes: [Route]) {
    self.routes = routes.enumerated().map { CompiledRoute($0.element, index: $0.offset) }
  }

  /// The route for a request, without looking at who sent it (allow lists are not checked;
  /// use `decide(method:host:explicitPort:path:client:)` for that). Allocation-free when the
  /// request is forwarded.
  /// - Parameters:
  ///   - host: the request's host, lowercased (a trailing dot and upper case are tolerated);
  ///     IPv6 with or without brackets.
  ///   - explicitPort: the port the caller wrote, nil if none.
  ///   - path: path and query as sent.
  public func decide(method: String, host: String, explicitPort: Int?, path: String)
    -> RoutingDecision
  {
    decide(method: method, host: host, explicitPort: explicitPort, path: path, check: .skip)
  }

  /// `decide`, then the route's allow list: a client the route does not allow gets 403
  /// `client_not_allowed` (checked after `deny`, before `methods`). `client` nil is an
  /// anonymous caller (no clients are defined), which only routes without `allow` take.
  /// In report mode the caller may let a `client_not_allowed` refusal through: the decision
  /// carries the route.
  public func decide(
    method: String, host: String, explicitPort: Int?, path: String, client: String?
  ) -> RoutingDecision {
    decide(
      method: method, host: host, explicitPort: explicitPort, path: path, check: .client(client))
  }

  /// `decide` for a parsed request authority (`Authority.host` is already lowercase, IPv6
  /// without brackets).
  public func decide(method: String, authority: Authority, path: String) -> RoutingDecision {
    decide(method: method, host: authority.host, explicitPort: authority.port, path: path)
  }

  /// A CONNECT to `host:port`. Patterns are matched by host and port only; a pattern with a
  /// path prefix never matches a tunnel. The first route that matches decides: a `deny` route
  /// refuses with 403 `denied`, a route without `tunnel` with 403 `tunnel_denied`; no match is
  /// 403 `tunnel_denied` too (deny by default). Allow lists are not checked.
  public func decideTunnel(host: String, port: Int) -> RoutingDecision {
    decideTunnel(host: host, port: port, check: .skip)
  }

  /// `decideTunnel`, then the route's allow list (403 `client_not_allowed`; nil: anonymous).
  public func decideTunnel(host: String, port: Int, client: String?) -> RoutingDecision {
    decideTunnel(host: host, port: port, check: .client(client))
  }

  fileprivate enum ClientCheck {
    case skip
    case client(String?)
  }

  private func decide(
    method: String, host: String, explicitPort: Int?, path: String, check: ClientCheck
  ) -> RoutingDecision {
    let key = HostKey(host)
    // The path part (no query or fragment); its other readings are made only when needed.
    var readings = PathReadings(path.utf8.prefix(while: { $0 != 0x3F && $0 != 0x23 }))
    for r in routes {
      let port = explicitPort ?? r.defaultPort
      var hit = false
      for p in r.patterns {
        guard p.port == nil || p.port == port, p.host.matches(key) else { continue }
        if p.matchesPath(&readings) {
          hit = true
          break
        }
      }
      guard hit else { continue }
      let match = RouteMatch(route: r.route, index: r.index)
      if let refusal = r.refusal(match, check) { return refusal }
      if let methods = r.route.methods, !methods.contains(method) {
        return .refuse(
          code: .methodNotAllowed,
          reason: "method \(Self.quoted(method)) \(r.methodReason)", route: match)
      }
      return .forward(match)
    }
    return .refuse(
      code: .noRoute,
      reason: "no route for host \(Self.quoted(key.display)): credproxy is deny-by-default",
      route: nil)
  }

  private func decideTunnel(host: String, port: Int, check: ClientCheck) -> RoutingDecision {
    let key = HostKey(host)
    for r in routes {
      let hit = r.patterns.contains { p in
        p.path == nil && (p.port == nil || p.port == port) && p.host.matches(key)
      }
      guard hit else { continue }
      let match = RouteMatch(route: r.route, index: r.index)
      if let refusal = r.refusal(match, check) { return refusal }
      guard r.route.tunnel || r.route.intercept else {
        return .refuse(
          code: .tunnelDenied,
          reason:
            "CONNECT to \(Self.quoted(key.authority(port))) is not allowed: \(r.label) has neither tunnel nor intercept",
          route: match)
      }
      return .forward(match)
    }
    return .refuse(
      code: .tunnelDenied,
      reason:
        "no intercept or tunnel route for \(Self.quoted(key.authority(port))): credproxy is deny-by-default",
      route: nil)
  }

  /// A value from a request (host, method, user name), quoted for a message and stripped of
  /// anything unprintable, at most `limit` characters.
  public static func quoted(_ s: String, limit: Int = 256) -> String {
    var out = "\""
    for u in s.unicodeScalars.prefix(limit) {
      if u == "\"" || u == "\\" {
        out += "\\" + String(u)
      } else if Printable.isControl(u) {
        out += "?"
      } else {
        out.unicodeScalars.append(u)
      }
    }
    return out + "\""
  }
}

// MARK: - Compiled form

private struct CompiledRoute: Sendable {
  let route: Route
  let index: Int
  let defaultPort: Int
  let patterns: [CompiledPattern]
  let label: String
  let denyReason: String
  let methodReason: String

  init(_ route: Route, index: Int) {
    self.route = route
    self.index = index
    self.defaultPort = route.upstream.defaultPort
    self.patterns = route.patterns.map { CompiledPattern($0, deny: route.deny) }
    let label = "route #\(index + 1) \(route.name) (line \(route.line))"
    self.label = label
    self.denyReason = "denied by \(label)"
    let allowed = (route.methods ?? []).sorted().joined(separator: ", ")
    self.methodReason = "is not allowed by \(label); allowed: \(allowed)"
  }

  /// What every matched route checks first, for requests and tunnels alike: `deny`, then the
  /// allow list (403 `client_not_allowed`).
  func refusal(_ match: RouteMatch, _ check: Router.ClientCheck) -> RoutingDecision? {
    if route.deny { return .refuse(code: .denied, reason: denyReason, route: match) }
    if case .client(let client) = check, !route.allows(client: client) {
      return clientRefusal(client, match)
    }
    return nil
  }

  /// 403 `client_not_allowed`. The reason does not list the clients that are allowed.
  func clientRefusal(_ client: String?, _ match: RouteMatch) -> RoutingDecision {
    let who = client.map { "client \(Router.quoted($0)) is" } ?? "anonymous callers are"
    return .refuse(
      code: .clientNotAllowed, reason: "\(who) not allowed by \(label)",
      route: match)
  }
}

private struct CompiledPattern: Sendable {
  /// Deny matches broadly, allow narrowly. An IPv4 pattern matches the address in every
  /// spelling (`CanonicalHost`) and its IPv4-mapped form; a deny pattern also matches the NAT64
  /// and 6to4 addresses that carry it, an allow pattern does not (those dial an IPv6 address,
  /// which the SSRF guard vets). An IPv6 pattern matches that address; a deny pattern for a
  /// NAT64 or 6to4 address also matches the IPv4 address it carries, in every spelling.
  enum HostMatch: Sendable {
    case any
    case name([UInt8])
    /// With its leading dot: `.example.com`.
    case suffix([UInt8])
    case ipv4(UInt32, deny: Bool)
    /// `embedded`: the IPv4 address a NAT64 or 6to4 address carries, for deny patterns.
    case ipv6(IPAddress, embedded: UInt32?)

    init(_ p: RoutePattern.Host, deny: Bool) {
      switch p {
      case .any:
        self = .any
      case .suffix(let s):
        self = .suffix(Array(("." + s).utf8))
      case .exact(let h):
        let c = CanonicalHost(h)
        if let a = c.address?.unmapped {
          if let v4 = a.ipv4 {
            self = .ipv4(v4, deny: deny)
          } else {
            self = .ipv6(a, embedded: deny ? a.embeddedIPv4 : nil)
          }
        } else {
          self = .name(Array(c.text.utf8))
        }
      }
    }

    func matches(_ key: HostKey) -> Bool {
      switch self {
      case .any:
        return true
      case .name(let n):
        return key.host.address == nil && key.name.elementsEqual(n)
      case .suffix(let s):
        let h = key.name
        return key.host.address == nil && h.count > s.count && h.suffix(s.count).elementsEqual(s)
      case .ipv4(let v4, let deny):
        guard let a = key.host.address else { return false }
        if a.unmapped.ipv4 == v4 { return true }
        return deny && a.embeddedIPv4 == v4
      case .ipv6(let p, let embedded):
        guard let a = key.host.address else { return false }
        if a == p { return true }
        guard let embedded else { return false }
        return key.host.reachedIPv4 == embedded
      }
    }
  }

  let host: HostMatch
  let port: Int?
  /// The prefix in the RFC 3986 reading (as the config parser normalised it).
  let path: [UInt8]?
  let pathIsDirectory: Bool
  /// The prefix in the canonical reading (`CanonicalPath.resolved`, folded for deny).
  let canonical: [UInt8]?
  let deny: Bool

  init(_ p: RoutePattern, deny: Bool) {
    host = HostMatch(p.host, deny: deny)
    port = p.port
    path = p.pathPrefix.map { Array($0.utf8) }
    pathIsDirectory = p.pathPrefix?.hasSuffix("/") ?? false
    canonical = path.map { CanonicalPath($0, fold: deny).resolved }
    self.deny = deny
  }

  /// Whole-segment prefix match in the RFC 3986 reading (`PathNormalizer`).
  func matchesRFCPath<C: Collection>(_ candidate: C) -> Bool where C.Element == UInt8 {
    guard let path else { return true }
    guard candidate.count >= path.count else { return false }
    var i = candidate.startIndex
    for b in path {
      if candidate[i] != b { return false }
      i = candidate.index(after: i)
    }
    if pathIsDirectory || i == candidate.endIndex { return true }
    return candidate[i] == 0x2F
  }

  /// A pattern without a path matches anything. A deny pattern matches when the path is under
  /// its prefix in any reading (RFC 3986, canonical with dot-segments applied or kept, or a
  /// path that still decodes after `CanonicalPath.maxDecodePasses`); an allow pattern only when
  /// it is under the prefix in both the RFC 3986 and the canonical reading, and the canonical
  /// reading has no dot-segment and is not ambiguous.
  func matchesPath(_ r: inout PathReadings) -> Bool {
    guard path != nil, let canonical else { return true }
    if deny {
      if r.simple && !r.upper {
        return CanonicalPath.hasPrefix(r.raw, canonical) || matchesRFCPath(r.raw)
      }
      if r.simple {
        return CanonicalPath.hasPrefix(r.lowered(), canonical) || matchesRFCPath(r.raw)
      }
      let c = r.denyReading()
      return c.ambiguous || CanonicalPath.hasPrefix(c.resolved, canonical)
        || CanonicalPath.hasPrefix(c.literal, canonical) || matchesRFCPath(r.rfc())
    }
    if r.simple { return matchesRFCPath(r.raw) && CanonicalPath.hasPrefix(r.raw, canonical) }
    let c = r.allowReading()
    return !c.ambiguous && !c.hasDotSegment && CanonicalPath.hasPrefix(c.resolved, canonical)
      && matchesRFCPath(r.rfc())
  }
}

/// One request path and its readings, each made at most once and only when a pattern with a
/// path needs it. A path without `%`, `;`, `\`, dots at segment ends or empty segments
/// (`simple`) reads the same everywhere and needs no work, unless a deny pattern must see it
/// lowercased.
struct PathReadings {
  let raw: Substring.UTF8View
  let simple: Bool
  let upper: Bool
  private var rfcForm: [UInt8]?
  private var lowerForm: [UInt8]?
  private var allowForm: CanonicalPath?
  private var denyForm: CanonicalPath?

  init(_ raw: Substring.UTF8View) {
    self.raw = raw
    simple = !PathNormalizer.needsCanonical(raw)
    upper = PathNormalizer.hasUpper(raw)
  }

  mutating func rfc() -> [UInt8] {
    if let rfcForm { return rfcForm }
    let f = PathNormalizer.normalize(raw)
    rfcForm = f
    return f
  }

  mutating func lowered() -> [UInt8] {
    if let lowerForm { return lowerForm }
    let f = raw.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    lowerForm = f
    return f
  }

  mutating func allowReading() -> CanonicalPath {
    if let allowForm { return allowForm }
    let f = CanonicalPath(raw, fold: false)
    allowForm = f
    return f
  }

  mutating func denyReading() -> CanonicalPath {
    if let denyForm { return denyForm }
    let f = CanonicalPath(raw, fold: true)
    denyForm = f
    return f
  }
}

/// The request host, read once per request.
private struct HostKey {
  let host: CanonicalHost
  let display: String

  init(_ host: String) {
    self.host = CanonicalHost(host)
    display = host
  }

  /// Lowercase, without brackets or a trailing dot.
  var name: Substring.UTF8View { host.text.utf8 }

  /// `host:port` for messages, IPv6 in brackets.
  func authority(_ port: Int) -> String {
    let h = String(host.text)
    return IPText.authority(h, port)
  }
}
