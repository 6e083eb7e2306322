import HTTP1
import Wire

/// A destination as the caller named it: host (lowercase, IPv6 without brackets) and the port
/// it wrote, if any.
public struct HostPort: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var host: String
  public var port: Int?

  public var description: String {
    let h = IPText.authorityHost(host)
    return port.map { "\(h):\($0)" } ?? h
  }

  public static func < (a: HostPort, b: HostPort) -> Bool {
    (a.host, a.port ?? -1) < (b.host, b.port ?? -1)
  }
}

/// One client on one route (or on no route: `route` nil).
public struct UsageKey: Hashable, Sendable {
  public var client: String?
  public var route: Int?

  public init(client: String?, route: Int?) {
    self.client = client
    self.route = route
  }
}

/// What one client did on one route in the window.
public final class RouteUsage: @unchecked Sendable {
  /// Every record for this client and route.
  public internal(set) var requests = 0
  /// Refused requests by reason (`deny` decisions).
  public internal(set) var denials: [String: Int] = [:]
  /// Requests report mode let through that enforce mode would refuse, by reason.
  public internal(set) var wouldDeny: [String: Int] = [:]
  /// Methods of the requests that used the route (allowed, or refused only by a limit or a
  /// failure after routing).
  public internal(set) var methods: [String: Int] = [:]
  /// Paths used, per destination.
  public internal(set) var paths: [HostPort: PathTree] = [:]
  /// Destinations refused (no route, deny), with counts; at most `maxRefusedHosts` kept.
  public internal(set) var refusedHosts: [String: Int] = [:]
  public internal(set) var scopeSets: [String: Int] = [:]
  public internal(set) var audiences: [String: Int] = [:]
  public internal(set) var first = Double.infinity
  public internal(set) var last = -Double.infinity

  static let maxHosts = 256
  static let maxRefusedHosts = 32
  /// Distinct methods, reasons, scope sets and audiences kept per client and route: a proxy
  /// writes a handful, a hostile log could name millions.
  static let maxKeys = 64

  /// True when some request used the route (what the tightened config keeps).
  public var used: Bool { !methods.isEmpty }
}

extension Dictionary where Value == Int {
  /// Counts one `key`, keeping at most `limit` keys (a new key past it is not counted).
  mutating func count(_ key: Key, limit: Int = RouteUsage.maxKeys) {
    if count < limit || self[key] != nil { self[key, default: 0] += 1 }
  }
}

/// Streams audit entries into per-client, per-route usage. Memory is bounded whatever the log
/// holds: at most `maxPairs` client/route pairs (what a config has is far fewer; records for
/// pairs past it are counted in `overflowRecords`), each with bounded counters and path trees.
public final class UsageCollector: @unchecked Sendable {
  public static let maxPairs = 10_000
  public let since: Double?
  public private(set) var usage: [UsageKey: RouteUsage] = [:]
  /// Each client's routes, in the order first seen (so listing a client is not a scan of all).
  private var routesByClient: [String?: [Int?]] = [:]
  /// Records of client/route pairs past `maxPairs`: counted, not itemised.
  public private(set) var overflowRecords = 0
  /// Records counted, records before `since`, lines that were not audit records.
  public private(set) var records = 0
  public private(set) var beforeWindow = 0
  public var skippedLines = 0
  /// Where the first skipped line is (`FILE:LINE`), for the report to point at.
  public var firstSkipped: String?
  public private(set) var first = Double.infinity
  public private(set) var last = -Double.infinity

  /// Refusals that are the policy saying no: a request refused this way did not use its route.
  /// Anything else after routing (limits, timeouts, upstream failures) still used it.
  static let policyRefusals: Set<String> = Set(
    [
      ErrorCode.noRoute, .denied, .methodNotAllowed, .clientNotAllowed, .tunnelDenied,
      .misdirected, .blockedAddress, .insecureUpstream, .placeholderCredential,
      .proxyAuthRequired,
    ].map(\.rawValue))

  public init(since: Double?) { self.since = since }

  /// Counts `e`; false (nothing counted) when it is not a record the proxy could have written.
  @discardableResult
  public func add(_ e: AuditEntry) -> Bool {
    guard Self.isWellFormed(e) else { return false }
    if let since, e.time < since {
      beforeWindow += 1
      return true
    }
    records += 1
    first = min(first, e.time)
    last = max(last, e.time)
    let key = UsageKey(client: e.client, route: e.route)
    let u: RouteUsage
    if let existing = usage[key] {
      u = existing
    } else if usage.count >= Self.maxPairs {
      overflowRecords += 1
      return true
    } else {
      u = RouteUsage()
      usage[key] = u
      routesByClient[e.client, default: []].append(e.route)
    }
    u.requests += 1
    u.first = min(u.first, e.time)
    u.last = max(u.last, e.time)
    let reason = e.reason ?? "unknown"
    switch e.decision {
    case "report":
      u.wouldDeny.count(reason)
      return true
    case "deny":
      u.denials.count(reason)
      if Self.policyRefusals.contains(reason) {
        let target = HostPort(host: e.host, port: e.port).description
        if u.refusedHosts.count < RouteUsage.maxRefusedHosts || u.refusedHosts[target] != nil {
          u.refusedHosts[target, default: 0] += 1
        }
        return true
      }
    default:
      break
    }
    guard e.route != nil else { return true }
    u.methods.count(e.method)
    if let s = e.scopes { u.scopeSets.count(s) }
    if let a = e.audience { u.audiences.count(a) }
    var hp = HostPort(host: e.host, port: e.port)
    if u.paths[hp] == nil && u.paths.count >= RouteUsage.maxHosts { hp = HostPort(host: "*") }
    let tree: PathTree
    if let t = u.paths[hp] {
      tree = t
    } else {
      tree = PathTree()
      u.paths[hp] = tree
    }
    if e.scheme == "connect" { tree.add(path: "") } else { tree.add(path: e.path) }
    return true
  }

  /// The host as the proxy's request parser reads and the audit writer writes it
  /// (`HTTP1.Authority`: lowercase, no trailing dot, IPv6 without brackets) and the method an
  /// HTTP token. A line with anything else was not written by the proxy, and must not reach the
  /// proposal, which writes hosts and methods into config text (a host `evil.com
  /// a.example.com` would otherwise become two route patterns).
  static func isWellFormed(_ e: AuditEntry) -> Bool {
    guard HeaderNames.isToken(e.method) else { return false }
    let bracketed = IPText.authorityHost(e.host)
    guard let authority = Authority.parse(Substring(bracketed)) else { return false }
    return authority.host == e.host && authority.port == nil
  }

  /// The clients in the window (nil: anonymous), named ones sorted, anonymous last.
  public var clients: [String?] {
    let names = routesByClient.keys.compactMap { $0 }.sorted()
    let anonymous = routesByClient[nil] != nil
    return names.map { Optional($0) } + (anonymous ? [nil] : [])
  }

  /// One client's routes in route order, no-route last.
  public func routes(of client: String?) -> [(route: Int?, usage: RouteUsage)] {
    (routesByClient[client] ?? []).sorted { ($0 ?? Int.max) < ($1 ?? Int.max) }
      .compactMap { route in usage[UsageKey(client: client, route: route)].map { (route, $0) } }
  }
}
