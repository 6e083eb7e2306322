/// IP literal text, parsed and printed without allocating (the router and the request parser run
/// these per request). The one reading of IP text in credproxy:
///
/// - `ipv4Canonical` (strict): a dotted quad as RFC 3986 `IPv4address` has it. What a Host
///   header, a URL or `proxy.conf` may spell an IPv4 address as.
/// - `ipv4Lenient`: any spelling `inet_aton` accepts. What a resolver would dial for a "name"
///   such as `127.1`; used to see through such names, never to accept them as canonical.
/// - `endsInNumber`: WHATWG's "ends in a number", the one meaning of "numeric host": such a
///   host is an IPv4 address or nothing, never a DNS name.
/// - `parseIPv6`: RFC 4291 text without brackets or zone.
/// - `formatIPv6`: the one printing: RFC 5952 as glibc `inet_ntop` writes it (lowercase, the
///   first longest run of two or more zero groups as `::`), with a dotted-quad tail for
///   `::ffff:a.b.c.d` (IPv4-mapped) and `::a.b.c.d` (IPv4-compatible) as `inet_ntop` does.
public enum IPText {
  /// A canonical dotted quad (`10.0.0.1`: four decimal parts 0–255, no leading zeros).
  @inlinable
  public static func ipv4Canonical<C: Collection>(_ bytes: C) -> UInt32? where C.Element == UInt8 {
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

  /// Any spelling glibc's `inet_aton` accepts (`127.1`, `0x7f.0.0.1`, `2130706433`,
  /// `0177.0.0.1`): what a resolver would dial for such a host name. One to four parts; each
  /// starts with a digit and is decimal, octal (leading `0`) or hex (`0x`, at least one digit);
  /// every part but the last is one byte, the last fills the rest. Trailing spaces, which
  /// `inet_aton` tolerates, are refused.
  @inlinable
  public static func ipv4Lenient<C: Collection>(_ s: C) -> UInt32? where C.Element == UInt8 {
    var i = s.startIndex
    var result: UInt32 = 0
    var parts = 0
    while true {
      guard i != s.endIndex, isDigit(s[i]) else { return nil }
      var base: UInt64 = 10
      var value: UInt64 = 0
      if s[i] == 0x30 {
        i = s.index(after: i)
        if i != s.endIndex && (s[i] == 0x78 || s[i] == 0x58) {
          i = s.index(after: i)
          // strtoul stops before a bare `0x`, leaving the x: not an address.
          guard i != s.endIndex, Hex.value(s[i]) != nil else { return nil }
          base = 16
        } else {
          base = 8
        }
      }
      while i != s.endIndex {
        let c = s[i]
        let d: UInt64
        if base == 16, let h = Hex.value(c) {
          d = UInt64(h)
        } else if isDigit(c) {
          d = UInt64(c - 0x30)
          if base == 8 && d >= 8 { return nil }
        } else {
          break
        }
        value = value * base + d
        if value > 0xFFFF_FFFF { return nil }
        i = s.index(after: i)
      }
      if i != s.endIndex && s[i] == 0x2E {
        if parts == 3 || value > 0xFF { return nil }
        result = result << 8 | UInt32(value)
        parts += 1
        i = s.index(after: i)
        continue
      }
      guard i == s.endIndex else { return nil }
      let rest = 32 - 8 * parts
      if rest < 32 && value >> UInt64(rest) != 0 { return nil }
      return parts == 0 ? UInt32(value) : result << UInt32(rest) | UInt32(value)
    }
  }

  /// RFC 4291 text (no brackets, no zone) as two 64-bit halves: groups of 1–4 hex digits, at
  /// most one `::`, optionally ending in a dotted quad.
  @inlinable
  public static func parseIPv6<C: Collection>(_ s: C) -> (UInt64, UInt64)?
  where C.Element == UInt8 {
    var head: UInt128 = 0
    var heads = 0
    var tail: UInt128 = 0
    var tails = 0
    var compressed = false
    var i = s.startIndex
    let end = s.endIndex
    guard i != end else { return nil }
    if s[i] == 0x3A {
      i = s.index(after: i)
      guard i != end, s[i] == 0x3A else { return nil }
      i = s.index(after: i)
      compressed = true
      if i == end { return (0, 0) }
    }
    func append(_ v: UInt128, _ count: Int) -> Bool {
      if compressed {
        tail = tail << (16 * UInt128(count)) | v
        tails += count
      } else {
        head = head << (16 * UInt128(count)) | v
        heads += count
      }
      return heads + tails <= 8
    }
    while true {
      let start = i
      var value: UInt32 = 0
      var digits = 0
      while i != end, let h = Hex.value(s[i]) {
        value = value << 4 | UInt32(h)
        digits += 1
        if digits > 4 { break }
        i = s.index(after: i)
      }
      if i != end && s[i] == 0x2E {
        // The last 32 bits as a dotted quad.
        guard let v4 = ipv4Canonical(s[start..<end]), append(UInt128(v4), 2) else { return nil }
        break
      }
      guard digits >= 1 && digits <= 4, append(UInt128(value), 1) else { return nil }
      if i == end { break }
      guard s[i] == 0x3A else { return nil }
      i = s.index(after: i)
      guard i != end else { return nil }
      if s[i] == 0x3A {
        guard !compressed else { return nil }
        compressed = true
        i = s.index(after: i)
        if i == end { break }
      }
    }
    let total = heads + tails
    if compressed {
      guard total <= 7 else { return nil }
    } else {
      guard total == 8 else { return nil }
    }
    let value = compressed ? head << (16 * UInt128(8 - heads)) | tail : head
    return (UInt64(truncatingIfNeeded: value >> 64), UInt64(truncatingIfNeeded: value))
  }

  /// An IPv6 literal (without brackets) as two 64-bit halves.
  public static func ipv6<S: StringProtocol>(_ text: S) -> (UInt64, UInt64)? {
    parseIPv6(text.utf8)
  }

  /// The canonical text of an IPv6 literal, as `inet_ntop` writes it.
  public static func canonicalIPv6<S: StringProtocol>(_ text: S) -> String? {
    guard let (hi, lo) = parseIPv6(text.utf8) else { return nil }
    return formatIPv6(hi, lo)
  }

  /// `host` as the host part of an authority (RFC 3986 §3.2.2): an IPv6 literal in brackets.
  public static func authorityHost(_ host: String) -> String {
    host.contains(":") ? "[\(host)]" : host
  }

  /// `host:port`, an IPv6 literal in brackets.
  public static func authority(_ host: String, _ port: Int) -> String {
    "\(authorityHost(host)):\(port)"
  }

  public static func formatIPv4(_ v: UInt32) -> String {
    "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
  }

  /// glibc `inet_ntop` form: the first longest run of two or more zero groups becomes `::`;
  /// `::a.b.c.d` and `::ffff:a.b.c.d` keep the IPv4 part dotted.
  public static func formatIPv6(_ hi: UInt64, _ lo: UInt64) -> String {
    func word(_ i: Int) -> UInt16 {
      UInt16(truncatingIfNeeded: (i < 4 ? hi : lo) >> UInt64(48 - 16 * (i % 4)))
    }
    var bestBase = -1
    var bestLen = 0
    var curBase = -1
    var curLen = 0
    for i in 0..<8 {
      if word(i) == 0 {
        if curBase == -1 {
          curBase = i
          curLen = 1
        } else {
          curLen += 1
        }
      } else if curBase != -1 {
        if curLen > bestLen {
          bestBase = curBase
          bestLen = curLen
        }
        curBase = -1
      }
    }
    if curBase != -1 && curLen > bestLen {
      bestBase = curBase
      bestLen = curLen
    }
    if bestLen < 2 { bestBase = -1 }
    var out = ""
    var i = 0
    while i < 8 {
      if i == bestBase {
        out += "::"
        i += bestLen
        continue
      }
      if i > 0 && !out.hasSuffix(":") { out += ":" }
      if i == 6 && bestBase == 0 && (bestLen == 6 || (bestLen == 5 && word(5) == 0xFFFF)) {
        out += formatIPv4(UInt32(truncatingIfNeeded: lo))
        break
      }
      out += String(word(i), radix: 16)
      i += 1
    }
    return out
  }

  /// WHATWG's "ends in a number" for the last label of a host name (without a trailing dot):
  /// all decimal digits, or `0x`/`0X` followed by hex digits. A host whose last label is
  /// numeric is read as an IPv4 address (`ipv4Canonical`, or `ipv4Lenient` to see what a
  /// resolver would make of it), never as a name.
  @inlinable
  public static func isNumericLabel<C: Collection>(_ label: C) -> Bool where C.Element == UInt8 {
    guard !label.isEmpty else { return false }
    if label.allSatisfy(isDigit) { return true }
    var i = label.startIndex
    guard label.count >= 2, label[i] == 0x30 else { return false }
    i = label.index(after: i)
    guard label[i] | 0x20 == 0x78 else { return false }
    return label[label.index(after: i)...].allSatisfy { Hex.value($0) != nil }
  }

  /// `isNumericLabel` of the last label of `host` (one trailing dot ignored).
  @inlinable
  public static func endsInNumber<C: BidirectionalCollection>(_ host: C) -> Bool
  where C.Element == UInt8 {
    var h = host[...]
    if h.last == 0x2E { h = h.dropLast() }
    guard let dot = h.lastIndex(of: 0x2E) else { return isNumericLabel(h) }
    return isNumericLabel(h[h.index(after: dot)...])
  }

  /// `localhost`, 127.0.0.0/8 or `::1`.
  public static func isLoopback(_ host: String) -> Bool {
    let h = host.hasSuffix(".") ? String(host.dropLast()) : host
    if h.lowercased() == "localhost" { return true }
    if let v4 = ipv4Canonical(h.utf8) { return v4 >> 24 == 127 }
    if let v6 = ipv6(h) { return v6.0 == 0 && v6.1 == 1 }
    return false
  }

  @inlinable @inline(__always) public static func isDigit(_ b: UInt8) -> Bool {
    b >= 0x30 && b <= 0x39
  }

}
