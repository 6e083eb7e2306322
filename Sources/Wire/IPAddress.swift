/// An IPv4 or IPv6 address as a value: parsed from text or socket-address bytes, compared,
/// printed canonically. Parsing is pure Swift and does not allocate, so the router and the
/// per-request policy checks can use it on every request.
///
/// IPv4 addresses are their own family: `::ffff:10.0.0.1` is an IPv6 address whose `unmapped`
/// form is `10.0.0.1`. `CIDR.contains` and the router compare IPv4-mapped addresses as IPv4.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
  public enum Family: Sendable, Hashable { case v4, v6 }

  public let family: Family
  /// IPv6: the high 64 bits; IPv4: 0.
  public let high: UInt64
  /// IPv6: the low 64 bits; IPv4: the address in the low 32 bits.
  public let low: UInt64

  public init(ipv4: UInt32) {
    family = .v4
    high = 0
    low = UInt64(ipv4)
  }

  public init(ipv6High high: UInt64, low: UInt64) {
    family = .v6
    self.high = high
    self.low = low
  }

  /// From the bytes of a `sockaddr_in`/`sockaddr_in6` address (network order): 4 bytes are
  /// IPv4, 16 bytes IPv6; any other count is nil.
  public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
    switch bytes.count {
    case 4:
      var v: UInt32 = 0
      for b in bytes { v = v << 8 | UInt32(b) }
      self.init(ipv4: v)
    case 16:
      var hi: UInt64 = 0
      var lo: UInt64 = 0
      for (i, b) in bytes.enumerated() {
        if i < 8 { hi = hi << 8 | UInt64(b) } else { lo = lo << 8 | UInt64(b) }
      }
      self.init(ipv6High: hi, low: lo)
    default:
      return nil
    }
  }

  /// Strict text: a dotted quad (`10.0.0.1`: four decimal parts 0–255, no leading zeros) or
  /// RFC 4291 IPv6 text (`::1`, `fd00:ec2::254`, `::ffff:10.0.0.1`) without brackets. An IPv6
  /// zone (`fe80::1%eth0`) is accepted and dropped. Other IPv4 spellings (`127.1`,
  /// `2130706433`) are not addresses here; see `IPAddress.inetAton`.
  public init?<S: StringProtocol>(_ text: S) {
    let u = text.utf8
    if let v4 = IPText.ipv4Canonical(u) {
      self.init(ipv4: v4)
      return
    }
    var end = u.endIndex
    if let pct = u.firstIndex(of: 0x25) {
      // A zone needs a non-empty id and only goes on IPv6.
      guard u.index(after: pct) != u.endIndex else { return nil }
      end = pct
    }
    guard let v6 = IPText.parseIPv6(u[u.startIndex..<end]) else { return nil }
    self.init(ipv6High: v6.0, low: v6.1)
  }

  /// IPv4 as `inet_aton` reads it: one to four parts separated by dots, each decimal, octal
  /// (leading `0`) or hex (`0x`); the last part fills the remaining bytes (`127.1`,
  /// `10.1.2`, `2130706433`, `0x7f.1`, `0177.0.0.1`). What a resolver dials for such a "name".
  public static func inetAton<S: StringProtocol>(_ text: S) -> IPAddress? {
    IPText.ipv4Lenient(text.utf8).map(IPAddress.init(ipv4:))
  }

  /// The IPv4 address, if this is one.
  public var ipv4: UInt32? { family == .v4 ? UInt32(truncatingIfNeeded: low) : nil }

  public var isIPv4: Bool { family == .v4 }

  /// 127.0.0.0/8 or ::1 (also as IPv4-mapped): traffic to it never leaves this host.
  public var isLoopback: Bool {
    let a = unmapped
    if let v4 = a.ipv4 { return v4 >> 24 == 127 }
    return a.high == 0 && a.low == 1
  }

  /// `::ffff:a.b.c.d` as the IPv4 address `a.b.c.d`; anything else unchanged.
  public var unmapped: IPAddress {
    if family == .v6 && high == 0 && low >> 32 == 0xFFFF {
      return IPAddress(ipv4: UInt32(truncatingIfNeeded: low))
    }
    return self
  }

  /// Network-order bytes: 4 for IPv4, 16 for IPv6.
  public var bytes: [UInt8] {
    if let v4 = ipv4 {
      return [UInt8(v4 >> 24), UInt8((v4 >> 16) & 0xFF), UInt8((v4 >> 8) & 0xFF), UInt8(v4 & 0xFF)]
    }
    var out: [UInt8] = []
    out.reserveCapacity(16)
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: high >> (56 - 8 * i))) }
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: low >> (56 - 8 * i))) }
    return out
  }

  /// Dotted quad, or IPv6 the way glibc's `inet_ntop` writes it (RFC 5952 compression of the
  /// longest run of two or more zero groups, lowercase hex, `::ffff:1.2.3.4` for mapped
  /// addresses).
  public var description: String {
    if let v4 = ipv4 { return IPText.formatIPv4(v4) }
    return IPText.formatIPv6(high, low)
  }

  /// As it goes in a URL or `Host` header: IPv6 in brackets.
  public var uriText: String { family == .v6 ? "[\(description)]" : description }
}

/// An address block: `10.0.0.0/8`, `::1/128`; a bare address is a single-address block.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
  /// The network address (host bits zero).
  public let address: IPAddress
  public let prefixLength: Int

  /// nil when the prefix is longer than the family allows or host bits are set.
  public init?(address: IPAddress, prefixLength: Int) {
    let bits = address.family == .v4 ? 32 : 128
    guard prefixLength >= 0 && prefixLength <= bits else { return nil }
    self.address = address
    self.prefixLength = prefixLength
    guard Self.masked(address, prefixLength) == address else { return nil }
  }

  /// `ADDR/LEN` or `ADDR` (a /32 or /128). Strict: host bits must be zero.
  public init?<S: StringProtocol>(_ text: S) {
    guard let r = try? Self.parse(String(text)) else { return nil }
    self = r
  }

  /// Like `init?(_:)`, with why it is not a block: `message` is `what is wrong; expected what`.
  public static func parse(_ text: String) throws(CIDRError) -> CIDR {
    let usage = "expected an address or ADDRESS/PREFIX (e.g. 10.0.0.0/8, 127.0.0.1, ::1/128)"
    let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
    guard let first = parts.first, let address = IPAddress(first),
      !first.utf8.contains(0x25)
    else {
      throw CIDRError("\"\(text)\" is not an address block; \(usage)")
    }
    let bits = address.family == .v4 ? 32 : 128
    var length = bits
    if parts.count == 2 {
      let digits = parts[1]
      guard !digits.isEmpty, digits.count <= 3,
        digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
        let n = Int(digits), n <= bits
      else {
        throw CIDRError(
          "invalid prefix length \"\(parts[1])\" in \"\(text)\"; expected 0–\(bits) for an IPv\(bits == 32 ? 4 : 6) address"
        )
      }
      length = n
    }
    let network = masked(address, length)
    guard network == address else {
      throw CIDRError(
        "\"\(text)\" has bits set after the /\(length) prefix; expected \(network)/\(length)")
    }
    return CIDR(trusted: address, length)
  }

  private init(trusted address: IPAddress, _ length: Int) {
    self.address = address
    self.prefixLength = length
  }

  /// Whether `a` is in the block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a
  /// dual-stack socket reports an IPv4 peer) is compared as its IPv4 address.
  public func contains(_ a: IPAddress) -> Bool {
    let a = address.family == .v4 ? a.unmapped : a
    guard a.family == address.family else { return false }
    return Self.masked(a, prefixLength) == address
  }

  public var description: String { "\(address)/\(prefixLength)" }

  static func masked(_ a: IPAddress, _ length: Int) -> IPAddress {
    if let v4 = a.ipv4 {
      let mask: UInt32 = length == 0 ? 0 : ~UInt32(0) << UInt32(32 - length)
      return IPAddress(ipv4: v4 & mask)
    }
    let hiMask: UInt64 =
      length >= 64 ? ~0 : (length == 0 ? 0 : ~UInt64(0) << UInt64(64 - length))
    let loMask: UInt64 =
      length <= 64 ? 0 : (length == 128 ? ~0 : ~UInt64(0) << UInt64(128 - length))
    return IPAddress(ipv6High: a.high & hiMask, low: a.low & loMask)
  }
}

public struct CIDRError: Error, Sendable, Equatable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
