#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// IP literal helpers shared by the parser and the router.
enum IPAddress {
  /// A canonical dotted quad (`10.0.0.1`: four decimal parts 0–255, no leading zeros).
  static func ipv4Canonical<C: Collection>(_ bytes: C) -> UInt32? where C.Element == UInt8 {
    var result: UInt32 = 0
    var part: UInt32 = 0
    var digits = 0
    var parts = 0
    var leadingZero = false
    for b in bytes {
      if b >= 0x30 && b <= 0x39 {
        if digits == 1 && leadingZero { return nil }
        if digits == 0 { leadingZero = b == 0x30 }
        part = part * 10 + UInt32(b - 0x30)
        digits += 1
        if digits > 3 || part > 255 { return nil }
      } else if b == 0x2E {
        if digits == 0 || parts == 3 { return nil }
        result = result << 8 | part
        parts += 1
        part = 0
        digits = 0
      } else {
        return nil
      }
    }
    if digits == 0 || parts != 3 { return nil }
    return result << 8 | part
  }

  /// Any spelling `inet_aton` accepts (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`):
  /// what a resolver would dial for such a host name. Only digits, `x`, hex letters and dots.
  static func ipv4Lenient(_ host: Substring) -> UInt32? {
    guard let first = host.utf8.first, first >= 0x30 && first <= 0x39 else { return nil }
    for b in host.utf8 {
      let ok =
        (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46)
        || b == 0x78 || b == 0x58 || b == 0x2E
      if !ok { return nil }
    }
    if let v = ipv4Canonical(host.utf8) { return v }
    var addr = in_addr()
    let ok = String(host).withCString { inet_aton($0, &addr) }
    guard ok != 0 else { return nil }
    return UInt32(bigEndian: addr.s_addr)
  }

  /// An IPv6 literal (without brackets) as two 64-bit halves.
  static func ipv6<S: StringProtocol>(_ text: S) -> (UInt64, UInt64)? {
    guard text.utf8.contains(0x3A) else { return nil }
    var addr = in6_addr()
    let ok = String(text).withCString { inet_pton(AF_INET6, $0, &addr) }
    guard ok == 1 else { return nil }
    return withUnsafeBytes(of: &addr) { raw in
      var hi: UInt64 = 0
      var lo: UInt64 = 0
      for i in 0..<8 { hi = hi << 8 | UInt64(raw[i]) }
      for i in 8..<16 { lo = lo << 8 | UInt64(raw[i]) }
      return (hi, lo)
    }
  }

  /// The canonical text of an IPv6 literal (RFC 5952, as `inet_ntop` writes it).
  static func canonicalIPv6<S: StringProtocol>(_ text: S) -> String? {
    guard text.utf8.contains(0x3A) else { return nil }
    var addr = in6_addr()
    let ok = String(text).withCString { inet_pton(AF_INET6, $0, &addr) }
    guard ok == 1 else { return nil }
    var buf = [CChar](repeating: 0, count: 64)
    let written = buf.withUnsafeMutableBufferPointer { p in
      inet_ntop(AF_INET6, &addr, p.baseAddress, socklen_t(p.count))
    }
    guard written != nil else { return nil }
    let bytes = buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
  }

  static func formatIPv4(_ v: UInt32) -> String {
    "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
  }

  /// `localhost`, 127.0.0.0/8 or `::1`.
  static func isLoopback(_ host: String) -> Bool {
    let h = host.hasSuffix(".") ? String(host.dropLast()) : host
    if h.lowercased() == "localhost" { return true }
    if let v4 = ipv4Canonical(h.utf8) { return v4 >> 24 == 127 }
    if let v6 = ipv6(h) { return v6.0 == 0 && v6.1 == 1 }
    return false
  }
}
