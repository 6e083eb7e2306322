import Wire

// Parsing `host[:port]` / `[v6][:port]` for the Host header, absolute-form and authority-form.
//
// Stricter than RFC 3986 on purpose: host rules match on the normalised host, so every host has
// one spelling only.
// - A name is letters, digits, `-`, `.`, `_` (no percent-encoding, no sub-delims, no userinfo),
//   non-empty labels of at most 63 bytes, at most 253 bytes; lowercased; one trailing dot dropped.
// - A name whose last label is numeric (`IPText.endsInNumber`: `2130706433`, `127.1`, `0x7f.1`,
//   `0177.0.0.1`) must be a canonical dotted-quad IPv4 address (`IPText.ipv4Canonical`), since
//   resolvers read those spellings as addresses.
// - IPv6 literals are re-serialised in the one canonical form, `IPText.formatIPv6` (RFC 5952 as
//   `inet_ntop` writes it: `[0:0::1]` -> `::1`); zone IDs and IPvFuture are refused.
// - The port, when present, is 1 to 5 digits with a value in 1...65535.

extension Authority {
  /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; nil when the text is not a valid authority.
  public static func parse(_ text: Substring) -> Authority? {
    var copy = text
    return copy.withUTF8 { utf8 in parseAuthority(utf8, 0..<utf8.count) }
  }
}

func parseAuthority(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Authority? {
  var i = range.lowerBound
  let end = range.upperBound
  guard i < end else { return nil }
  let host: String
  let isIPv6: Bool
  if p[i] == ASCII.openBracket {
    var j = i &+ 1
    while j < end && p[j] != ASCII.closeBracket { j &+= 1 }
    guard j < end, let (hi, lo) = IPText.parseIPv6(p[(i &+ 1)..<j]) else { return nil }
    host = IPText.formatIPv6(hi, lo)
    isIPv6 = true
    i = j &+ 1
  } else {
    var j = i
    while j < end && p[j] != ASCII.colon {
      guard isHostChar(p[j]) else { return nil }
      j &+= 1
    }
    guard let name = normaliseHostName(p, i..<j) else { return nil }
    host = name
    isIPv6 = false
    i = j
  }
  var port: Int? = nil
  if i < end {
    guard p[i] == ASCII.colon else { return nil }
    i &+= 1
    let digits = end &- i
    guard digits >= 1 && digits <= 5 else { return nil }
    var value = 0
    while i < end {
      let b = p[i]
      guard isDigit(b) else { return nil }
      value = value &* 10 &+ Int(b &- ASCII.zero)
      i &+= 1
    }
    guard value >= 1 && value <= 65535 else { return nil }
    port = value
  }
  return Authority(host: host, port: port, isIPv6: isIPv6)
}

/// Validates a host name whose bytes are all `isHostChar`; returns it lowercased without one
/// trailing dot.
private func normaliseHostName(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
  var hi = range.upperBound
  let lo = range.lowerBound
  if hi > lo && p[hi &- 1] == ASCII.dot { hi &-= 1 }
  guard hi > lo, hi &- lo <= 253 else { return nil }
  var labelStart = lo
  var hasUpper = false
  for j in lo...hi {
    if j == hi || p[j] == ASCII.dot {
      let length = j &- labelStart
      guard length >= 1 && length <= 63 else { return nil }
      if j < hi { labelStart = j &+ 1 }
    } else if p[j] >= 0x41 && p[j] <= 0x5A {
      hasUpper = true
    }
  }
  // `labelStart` is now the start of the last label.
  if IPText.isNumericLabel(p[labelStart..<hi]) {
    guard IPText.ipv4Canonical(p[lo..<hi]) != nil else { return nil }
  }
  if !hasUpper { return p.string(lo..<hi) }
  return String(unsafeUninitializedCapacity: hi &- lo) { out in
    var k = 0
    for j in lo..<hi {
      out[k] = asciiLower(p[j])
      k &+= 1
    }
    return k
  }
}
