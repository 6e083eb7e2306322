import CredproxyConfig
import EgressPolicy
import Glibc

/// SSRF rules applied to the address curl is about to connect to (CURLOPT_OPENSOCKETFUNCTION):
/// the decision is made on the host actually dialled, after DNS, so a public name that resolves to
/// 127.0.0.1 or 169.254.169.254 is caught, and the checked address is the one used (no rebinding).
///
/// Built per request but consulted only when curl opens a new connection (reused connections were
/// vetted when opened), so the host is normalised there, not on every request.
struct DialCheck: Sendable {
  /// A route of one loaded config: equal keys mean the same rules.
  struct RouteKey: Hashable, Sendable {
    var generation: Int
    var index: Int
  }

  let policy: SSRFPolicy
  let route: Route
  let routeKey: RouteKey
  /// The host as the caller named it.
  let host: String
  /// Report mode: log a refusal, dial anyway.
  let report: Bool

  /// Why `address` may not be dialled, or nil.
  func refusal(_ address: IPAddress) -> String? {
    policy.refusal(address: address, route: route, targetHost: HostNormalizer.normalize(host))
  }

  /// The IP of a socket address (`sockaddr_in` / `sockaddr_in6` bytes).
  static func ipAddress(_ sa: UnsafeRawPointer, length: Int) -> IPAddress? {
    let family = Int32(sa.load(as: sa_family_t.self))
    if family == AF_INET && length >= MemoryLayout<sockaddr_in>.size {
      let offset = MemoryLayout<sockaddr_in>.offset(of: \sockaddr_in.sin_addr)!
      return IPAddress(bytes: Array(UnsafeRawBufferPointer(start: sa + offset, count: 4)))
    }
    if family == AF_INET6 && length >= MemoryLayout<sockaddr_in6>.size {
      let offset = MemoryLayout<sockaddr_in6>.offset(of: \sockaddr_in6.sin6_addr)!
      return IPAddress(bytes: Array(UnsafeRawBufferPointer(start: sa + offset, count: 16)))
    }
    return nil
  }
}
