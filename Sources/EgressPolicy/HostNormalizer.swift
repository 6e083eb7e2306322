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
/// `0x7f.1`, `127.1` are all `127.0.0.1`. The reading is `CanonicalHost`'s, the one the router
/// uses too.
public enum HostNormalizer {
  public static func normalize(_ host: String) -> NormalizedHost {
    let c = CanonicalHost(host)
    if let a = c.address { return .ip(a) }
    return .name(String(c.text))
  }
}
