// Parsing `host[:port]` / `[v6][:port]` for the Host header, absolute-form and authority-form.
//
// Stricter than RFC 3986 on purpose: host rules match on the normalised host, so every host has
// one spelling only.
// - A name is letters, digits, `-`, `.`, `_` (no percent-encoding, no sub-delims, no userinfo),
//   non-empty labels of at most 63 bytes, at most 253 bytes; lowercased; one trailing dot dropped.
// - A name whose last label is numeric (`2130706433`, `127.1`, `0x7f.1`, `0177.0.0.1`) must be a
//   canonical dotted-quad IPv4 address, since resolvers read those spellings as addresses.
// - IPv6 literals are re-serialised in RFC 5952 form (`[0:0::1]` -> `::1`); zone IDs and
//   IPvFuture are refused.
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
    guard j < end, let groups = parseIPv6(p, (i &+ 1)..<j) else { return nil }
    host = formatIPv6(groups)
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
  if labelLooksNumeric(p, labelStart..<hi) {
    guard parseIPv4(p, lo..<hi) != nil else { return nil }
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

/// WHATWG's "ends in a number": all decimal digits, or `0x`/`0X` followed by hex digits.
private func labelLooksNumeric(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
  guard !range.isEmpty else { return false }
  var allDigits = true
  for j in range where !isDigit(p[j]) {
    allDigits = false
    break
  }
  if allDigits { return true }
  let lo = range.lowerBound
  guard range.count >= 2, p[lo] == ASCII.zero, asciiLower(p[lo &+ 1]) == 0x78 else { return false }
  for j in (lo &+ 2)..<range.upperBound where hexValue(p[j]) == nil { return false }
  return true
}

/// A canonical dotted-quad IPv4 address (RFC 3986 `IPv4address`: no leading zeros).
func parseIPv4(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> UInt32? {
  var result: UInt32 = 0
  var parts = 0
  var i = range.lowerBound
  let end = range.upperBound
  while true {
    let start = i
    var value: UInt32 = 0
    while i < end && isDigit(p[i]) && i &- start < 3 {
      value = value &* 10 &+ UInt32(p[i] &- ASCII.zero)
      i &+= 1
    }
    let digits = i &- start
    guard digits >= 1, value <= 255, digits == 1 || p[start] != ASCII.zero else { return nil }
    result = result << 8 | value
    parts &+= 1
    if parts == 4 { return i == end ? result : nil }
    guard i < end && p[i] == ASCII.dot else { return nil }
    i &+= 1
  }
}

/// RFC 4291 text form, with an optional dotted-quad tail. No zone ID.
private func parseIPv6(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> SIMD8<UInt16>? {
  var groups = SIMD8<UInt16>()
  var count = 0
  var gap: Int? = nil
  var i = range.lowerBound
  let end = range.upperBound
  guard i < end else { return nil }
  if p[i] == ASCII.colon {
    guard i &+ 1 < end && p[i &+ 1] == ASCII.colon else { return nil }
    gap = 0
    i &+= 2
  }
  while i < end {
    guard count < 8 else { return nil }
    let start = i
    var value: UInt16 = 0
    while i < end && i &- start < 4, let h = hexValue(p[i]) {
      value = value << 4 | UInt16(h)
      i &+= 1
    }
    if i < end && p[i] == ASCII.dot {
      guard count <= 6, let v4 = parseIPv4(p, start..<end) else { return nil }
      groups[count] = UInt16(truncatingIfNeeded: v4 >> 16)
      groups[count &+ 1] = UInt16(truncatingIfNeeded: v4)
      count &+= 2
      i = end
      break
    }
    guard i > start else { return nil }
    groups[count] = value
    count &+= 1
    if i == end { break }
    guard p[i] == ASCII.colon else { return nil }
    i &+= 1
    if i < end && p[i] == ASCII.colon {
      guard gap == nil else { return nil }
      gap = count
      i &+= 1
    } else if i == end {
      return nil
    }
  }
  guard let gap else { return count == 8 ? groups : nil }
  guard count < 8 else { return nil }
  var out = SIMD8<UInt16>()
  for k in 0..<gap { out[k] = groups[k] }
  let tail = count &- gap
  for k in 0..<tail { out[8 &- tail &+ k] = groups[gap &+ k] }
  return out
}

/// RFC 5952: lowercase hex, no leading zeros, the longest run (>= 2) of zero groups as `::`,
/// IPv4-mapped addresses with a dotted-quad tail.
private func formatIPv6(_ g: SIMD8<UInt16>) -> String {
  if g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 && g[5] == 0xFFFF {
    return "::ffff:\(g[6] >> 8).\(g[6] & 0xFF).\(g[7] >> 8).\(g[7] & 0xFF)"
  }
  var bestStart = -1
  var bestLength = 1
  var k = 0
  while k < 8 {
    if g[k] == 0 {
      var e = k
      while e < 8 && g[e] == 0 { e += 1 }
      if e - k > bestLength {
        bestStart = k
        bestLength = e - k
      }
      k = e
    } else {
      k += 1
    }
  }
  var text = ""
  text.reserveCapacity(39)
  k = 0
  while k < 8 {
    if k == bestStart {
      text += "::"
      k += bestLength
      continue
    }
    if !text.isEmpty && !text.hasSuffix(":") { text += ":" }
    text += String(g[k], radix: 16)
    k += 1
  }
  return text
}
