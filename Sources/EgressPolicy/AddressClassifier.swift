import CredproxyConfig

/// What an address reaches. Everything but `.public` is refused by default (`SSRFPolicy`).
public enum AddressClass: String, Sendable, Hashable, CustomStringConvertible {
  case `public`
  /// 127.0.0.0/8, ::1.
  case loopback
  /// 169.254.0.0/16 (cloud metadata at 169.254.169.254), fe80::/10.
  case linkLocal = "link-local"
  /// 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), fc00::/7, fec0::/10,
  /// 64:ff9b:1::/48.
  case `private`
  /// 0.0.0.0/8, :: (Linux dials the local host for these).
  case unspecified
  /// 224.0.0.0/4, ff00::/8.
  case multicast
  /// 255.255.255.255.
  case broadcast
  /// Special-purpose and unallocated blocks: 240/4, 192.0.0/24, documentation and
  /// benchmarking ranges, 2001::/23, 2001:db8::/32, 100::/64, IPv4-compatible ::/96, and
  /// IPv6 outside 2000::/3.
  case reserved

  public var description: String { rawValue }
}

public enum AddressClassifier {
  /// The class of `address`. IPv6 forms that carry an IPv4 address (IPv4-mapped
  /// `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::/48`) are classified by
  /// that IPv4 address.
  public static func classify(_ address: IPAddress) -> AddressClass {
    if let v4 = address.ipv4 { return classifyIPv4(v4) }
    if let embedded = address.embeddedIPv4 { return classifyIPv4(embedded) }
    return classifyIPv6(address.high, address.low)
  }

  /// Anything but a public address: what may only be dialled when the operator chose it.
  public static func isForbiddenByDefault(_ address: IPAddress) -> Bool {
    classify(address) != .public
  }

  static func classifyIPv4(_ v: UInt32) -> AddressClass {
    func inBlock(_ net: UInt32, _ length: UInt32) -> Bool {
      let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << (32 - length)
      return v & mask == net
    }
    if v == 0xFFFF_FFFF { return .broadcast }
    switch v >> 24 {
    case 0: return .unspecified
    case 10: return .private
    case 127: return .loopback
    default: break
    }
    if inBlock(0xA9FE_0000, 16) { return .linkLocal }  // 169.254/16
    if inBlock(0xAC10_0000, 12) { return .private }  // 172.16/12
    if inBlock(0xC0A8_0000, 16) { return .private }  // 192.168/16
    if inBlock(0x6440_0000, 10) { return .private }  // 100.64/10
    if inBlock(0xE000_0000, 4) { return .multicast }  // 224/4
    if inBlock(0xF000_0000, 4) { return .reserved }  // 240/4
    if inBlock(0xC000_0000, 24) { return .reserved }  // 192.0.0/24 IETF assignments
    if inBlock(0xC000_0200, 24) { return .reserved }  // 192.0.2/24 TEST-NET-1
    if inBlock(0xC058_6300, 24) { return .reserved }  // 192.88.99/24 6to4 relay
    if inBlock(0xC612_0000, 15) { return .reserved }  // 198.18/15 benchmarking
    if inBlock(0xC633_6400, 24) { return .reserved }  // 198.51.100/24 TEST-NET-2
    if inBlock(0xCB00_7100, 24) { return .reserved }  // 203.0.113/24 TEST-NET-3
    return .public
  }

  static func classifyIPv6(_ hi: UInt64, _ lo: UInt64) -> AddressClass {
    if hi == 0 && lo == 0 { return .unspecified }
    if hi == 0 && lo == 1 { return .loopback }
    let top16 = hi >> 48
    if top16 >> 8 == 0xFF { return .multicast }  // ff00::/8
    if top16 & 0xFFC0 == 0xFE80 { return .linkLocal }  // fe80::/10
    if top16 & 0xFFC0 == 0xFEC0 { return .private }  // fec0::/10 site-local (deprecated)
    if top16 & 0xFE00 == 0xFC00 { return .private }  // fc00::/7 unique local
    if hi >> 16 == 0x0064_FF9B_0001 { return .private }  // 64:ff9b:1::/48 local NAT64
    if hi == 0x0100_0000_0000_0000 { return .reserved }  // 100::/64 discard
    if hi >> 32 == 0x2001_0DB8 { return .reserved }  // 2001:db8::/32 documentation
    if top16 == 0x2001 && (hi >> 32) & 0xFFFF < 0x200 {
      return .reserved  // 2001::/23 IETF protocol assignments (Teredo, ORCHID, …)
    }
    if top16 & 0xE000 != 0x2000 { return .reserved }  // outside 2000::/3 global unicast
    return .public
  }
}
