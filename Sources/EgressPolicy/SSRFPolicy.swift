import CredproxyConfig

/// Which addresses a route may dial. A public address always; anything else (private,
/// loopback, link-local, unspecified, multicast, reserved — see `AddressClassifier`) only when
/// the operator chose it explicitly:
/// - the route says `allow-private`, or
/// - the route uses `connect-to` (the operator named the address to dial), or
/// - one of the route's patterns names the request's host exactly (no wildcard): `route
///   127.0.0.1:9000 { … }` or `route db.internal { … }` may reach what that name resolves to.
///   For an IP-literal host the dialled address must be that address.
///
/// Check the address actually dialled (after DNS), not the name: a public name can resolve to
/// 169.254.169.254.
public struct SSRFPolicy: Sendable {
  public init() {}

  public func mayDial(address: IPAddress, route: Route, targetHost: NormalizedHost) -> Bool {
    refusal(address: address, route: route, targetHost: targetHost) == nil
  }

  /// nil when `mayDial`; else one line for the caller and the logs, e.g.
  /// `address 169.254.169.254 (link-local) of "x.example.com" is not public; …`.
  public func refusal(address: IPAddress, route: Route, targetHost: NormalizedHost) -> String? {
    let cls = AddressClassifier.classify(address)
    if cls == .public || route.allowPrivate || route.connectTo != nil { return nil }
    if Self.namesExactly(route, targetHost) {
      guard case .ip(let target) = targetHost else { return nil }
      if target.unmapped == address.unmapped { return nil }
    }
    return
      "address \(address) (\(cls)) of \"\(targetHost)\" is not public; a route reaches such addresses only when a pattern names the host exactly, or with connect-to or allow-private"
  }

  /// Whether a pattern of `route` is exactly `host` (not a wildcard).
  public static func namesExactly(_ route: Route, _ host: NormalizedHost) -> Bool {
    for p in route.patterns {
      guard case .exact(let text) = p.host else { continue }
      switch host {
      case .name(let n):
        if n == text { return true }
      case .ip(let a):
        if let b = IPAddress(text), b.unmapped == a.unmapped { return true }
      }
    }
    return false
  }
}
