/// A URL a caller would request through the proxy, split the way the router sees it.
public struct TargetURL: Sendable {
  public let scheme: String
  /// Lowercase, no trailing dot, IPv6 without brackets.
  public let host: String
  public let isIPv6: Bool
  public let port: Int?
  /// Never empty (`/` at least); no fragment.
  public let pathAndQuery: String
  /// Credentials may travel to it: https, or plain http to a loopback host.
  public let isSafeForCredentials: Bool

  public init?(_ text: String) {
    guard let parts = try? URLParts.parse(text) else { return nil }
    isSafeForCredentials = parts.isSafeForCredentials
    scheme = parts.scheme
    host = parts.host
    isIPv6 = parts.isIPv6
    port = parts.port
    pathAndQuery = parts.pathAndQuery
  }
}
