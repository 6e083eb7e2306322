import CredproxyConfig

/// A request host the way a resolver would dial it: an address, or a DNS name.
public enum NormalizedHost: Sendable, Hashable, CustomStringConvertible {
  case ip(IPAddress)
  /// Lowercase, no trailing dot.
  case name(String)

  public var description: String {
    switch self {
    case .ip(let a): return a.description
    case .name(let n): return n
    }
  }

  /// The address, when the host is one.
  public var address: IPAddress? {
    if case .ip(let a) = self { return a }
    return nil
  }
}

/// Turns the spellings of one host into one form, so that policy sees what will be dialled:
/// `LOCALHOST.` is `localhost`; `[::1]`, `::1%lo` are `::1`; `2130706433`, `0177.0.0.1`,
/// `0x7f.1`, `127.1` are all `127.0.0.1` (`inet_aton` reads them so, and so does curl's
/// resolver).
public enum HostNormalizer {
  public static func normalize(_ host: String) -> NormalizedHost {
    var h = Substring(host)
    if h.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { h = Substring(host.lowercased()) }
    if h.utf8.first == 0x5B && h.utf8.last == 0x5D { h = h.dropFirst().dropLast() }
    if h.utf8.count > 1 && h.utf8.last == 0x2E { h = h.dropLast() }
    if h.utf8.contains(0x3A) {
      // IPv6, with an optional zone: `fe80::1%eth0`, or `%25eth0` as written in a URL.
      if let a = IPAddress(h) { return .ip(a) }
      return .name(String(h))
    }
    if let first = h.utf8.first, first >= 0x30 && first <= 0x39, let a = IPAddress.inetAton(h) {
      return .ip(a)
    }
    return .name(String(h))
  }
}
