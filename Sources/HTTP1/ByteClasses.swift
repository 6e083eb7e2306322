// Byte classes for the parser, as 128-bit masks (bit n set = ASCII byte n is in the class).
// Bytes >= 0x80 are in none of them. Checked against the RFC character lists in the tests.

import Wire

enum ASCII {
  static let tab: UInt8 = 0x09
  static let lf: UInt8 = 0x0A
  static let cr: UInt8 = 0x0D
  static let space: UInt8 = 0x20
  static let quote: UInt8 = 0x22
  static let hash: UInt8 = 0x23
  static let percent: UInt8 = 0x25
  static let comma: UInt8 = 0x2C
  static let dot: UInt8 = 0x2E
  static let slash: UInt8 = 0x2F
  static let zero: UInt8 = 0x30
  static let nine: UInt8 = 0x39
  static let colon: UInt8 = 0x3A
  static let semicolon: UInt8 = 0x3B
  static let equals: UInt8 = 0x3D
  static let question: UInt8 = 0x3F
  static let at: UInt8 = 0x40
  static let openBracket: UInt8 = 0x5B
  static let backslash: UInt8 = 0x5C
  static let closeBracket: UInt8 = 0x5D
  static let del: UInt8 = 0x7F
}

@inline(__always)
func inMask(_ b: UInt8, _ lo: UInt64, _ hi: UInt64) -> Bool {
  if b < 64 { return (lo >> UInt64(b)) & 1 != 0 }
  if b < 128 { return (hi >> UInt64(b &- 64)) & 1 != 0 }
  return false
}

/// RFC 9110 tchar: `!#$%&'*+-.^_`|~`, DIGIT, ALPHA.
@inline(__always)
func isTokenChar(_ b: UInt8) -> Bool {
  inMask(b, 0x03FF_6CFA_0000_0000, 0x57FF_FFFF_C7FF_FFFE)
}

/// RFC 3986 characters allowed literally in a path or query: unreserved, sub-delims, `:@/?`.
/// `%` is not in the class: it is checked together with the two hex digits that must follow it.
@inline(__always)
func isTargetChar(_ b: UInt8) -> Bool {
  inMask(b, 0xAFFF_FFD2_0000_0000, 0x47FF_FFFE_87FF_FFFF)
}

/// Characters of a DNS host name as this proxy accepts it: ALPHA, DIGIT, `-`, `.`, `_`.
@inline(__always)
func isHostChar(_ b: UInt8) -> Bool {
  inMask(b, 0x03FF_6000_0000_0000, 0x07FF_FFFE_87FF_FFFE)
}

/// `Wire.Hex.value`, the one hex-digit decoder.
@inline(__always)
func hexValue(_ b: UInt8) -> UInt8? { Hex.value(b) }

@inline(__always)
func isDigit(_ b: UInt8) -> Bool { b >= ASCII.zero && b <= ASCII.nine }

@inline(__always)
func isOWS(_ b: UInt8) -> Bool { b == ASCII.space || b == ASCII.tab }

@inline(__always)
func asciiLower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

/// A field-value byte other than obs-text: HTAB, SP, VCHAR (RFC 9110 §5.5).
@inline(__always)
func isFieldVChar(_ b: UInt8) -> Bool {
  b == ASCII.tab || (b >= ASCII.space && b < ASCII.del)
}

extension UnsafeBufferPointer<UInt8> {
  /// True when `self[range]` equals `lowercase` ignoring ASCII case. `lowercase` must be lowercase.
  @inline(__always)
  func equalsIgnoringCase(_ range: Range<Int>, _ lowercase: StaticString) -> Bool {
    guard range.count == lowercase.utf8CodeUnitCount else { return false }
    let lit = lowercase.utf8Start
    var i = 0
    for j in range {
      if asciiLower(self[j]) != lit[i] { return false }
      i &+= 1
    }
    return true
  }

  /// True when `self[range]` is exactly `literal`.
  @inline(__always)
  func equalsCaseSensitive(_ range: Range<Int>, _ literal: StaticString) -> Bool {
    guard range.count == literal.utf8CodeUnitCount else { return false }
    let lit = literal.utf8Start
    var i = 0
    for j in range {
      if self[j] != lit[i] { return false }
      i &+= 1
    }
    return true
  }

  /// True when `self[range]` starts with `lowercase`, ignoring ASCII case.
  @inline(__always)
  func hasPrefixIgnoringCase(_ range: Range<Int>, _ lowercase: StaticString) -> Bool {
    let n = lowercase.utf8CodeUnitCount
    guard range.count >= n else { return false }
    return equalsIgnoringCase(range.lowerBound..<(range.lowerBound &+ n), lowercase)
  }

  /// `range` without leading and trailing SP/HTAB.
  @inline(__always)
  func trimmingOWS(_ range: Range<Int>) -> Range<Int> {
    var lo = range.lowerBound
    var hi = range.upperBound
    while lo < hi && isOWS(self[lo]) { lo &+= 1 }
    while hi > lo && isOWS(self[hi &- 1]) { hi &-= 1 }
    return lo..<hi
  }

  @inline(__always)
  func string(_ range: Range<Int>) -> String {
    String(decoding: UnsafeBufferPointer(rebasing: self[range]), as: UTF8.self)
  }
}
