/// A request host the way a resolver would dial it: the one host canonicaliser, shared by the
/// router (`Router`) and the SSRF checks (`EgressPolicy.HostNormalizer`, the classifier).
///
/// - ASCII letters are lowercased (only when there are any: no allocation otherwise); brackets
///   and trailing dots are dropped: `LOCALHOST.` is `localhost`, `[::1]` is `::1`.
/// - Text with a `:` is an IPv6 address when it parses as one (a zone, `fe80::1%eth0` or
///   `%25eth0` as written in a URL, is accepted and dropped from `address`).
/// - Text whose last label is numeric (`IPText.endsInNumber`, the one meaning of "numeric
///   host") is an IPv4 address when `inet_aton` would read it so: `2130706433`, `0177.0.0.1`,
///   `0x7f.1`, `127.1` are all `127.0.0.1` (curl's resolver does). The request parser refuses
///   such hosts unless they are canonical dotted quads; this reading sees through the rest.
/// - Anything else is a name.
public struct CanonicalHost: Sendable {
  /// Lowercase, without brackets or a trailing dot.
  public let text: Substring
  /// The address, when the host is one.
  public let address: IPAddress?

  public init(_ host: String) {
    var h = Substring(host)
    if h.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { h = Substring(host.lowercased()) }
    // Trailing dots and brackets, until nothing changes, so the form is a fixed point: `a..` and
    // `[x.].` reach the same host as `a` and `x` would (a deny rule must not miss them).
    while true {
      let before = h.utf8.count
      while h.utf8.count > 1 && h.utf8.last == 0x2E { h = h.dropLast() }
      if h.utf8.count >= 2 && h.utf8.first == 0x5B && h.utf8.last == 0x5D {
        h = h.dropFirst().dropLast()
      }
      if h.utf8.count == before { break }
    }
    text = h
    if h.utf8.contains(0x3A) {
      address = IPAddress(h)
    } else if IPText.endsInNumber(h.utf8) {
      address = IPText.ipv4Lenient(h.utf8).map(IPAddress.init(ipv4:))
    } else {
      address = nil
    }
  }

  /// The IPv4 address this host reaches: its own, or the one its IPv6 address carries
  /// (IPv4-mapped, NAT64, 6to4; see `IPAddress.embeddedIPv4`).
  public var reachedIPv4: UInt32? { address.flatMap { $0.ipv4 ?? $0.embeddedIPv4 } }
}

extension IPAddress {
  /// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:0:0/96`), NAT64
  /// well-known prefix (`64:ff9b::/96`) and 6to4 (`2002::/16`, bits 16–47). nil for IPv4.
  public var embeddedIPv4: UInt32? {
    guard family == .v6 else { return nil }
    if high == 0 && low >> 32 == 0xFFFF { return UInt32(truncatingIfNeeded: low) }
    if high == 0x0064_FF9B_0000_0000 && low >> 32 == 0 { return UInt32(truncatingIfNeeded: low) }
    if high >> 48 == 0x2002 { return UInt32(truncatingIfNeeded: high >> 16) }
    return nil
  }
}
