/// The path the router matches on, so that spellings an upstream treats as the same path cannot
/// slip past a path rule: percent-encoded unreserved characters are decoded (`/%61dmin` →
/// `/admin`), other escapes get uppercase hex, `.` and `..` segments are resolved and repeated
/// slashes merged. The request itself is forwarded as sent.
enum PathNormalizer {
  /// Whether `normalize` could change this path (it holds `%`, `//` or `/.`).
  static func needsNormalization<C: Collection>(_ path: C) -> Bool where C.Element == UInt8 {
    var previousSlash = false
    for b in path {
      if b == 0x25 { return true }
      if previousSlash && (b == 0x2F || b == 0x2E) { return true }
      previousSlash = b == 0x2F
    }
    return false
  }

  static func validPercentEncoding<C: Collection>(_ path: C) -> Bool where C.Element == UInt8 {
    let bytes = Array(path)
    var i = 0
    while i < bytes.count {
      if bytes[i] == 0x25 {
        guard i + 2 < bytes.count, hex(bytes[i + 1]) != nil, hex(bytes[i + 2]) != nil else {
          return false
        }
        i += 3
      } else {
        i += 1
      }
    }
    return true
  }

  /// The normalised form of a path that starts with `/` (anything else is returned unchanged).
  static func normalize<C: Collection>(_ path: C) -> [UInt8] where C.Element == UInt8 {
    let input = Array(path)
    guard input.first == 0x2F else { return input }
    // 1. Percent-encoding: decode unreserved characters, uppercase the rest.
    var decoded: [UInt8] = []
    decoded.reserveCapacity(input.count)
    var i = 0
    while i < input.count {
      let b = input[i]
      if b == 0x25, i + 2 < input.count, let h = hex(input[i + 1]), let l = hex(input[i + 2]) {
        let v = h << 4 | l
        if isUnreserved(v) {
          decoded.append(v)
        } else {
          decoded.append(0x25)
          decoded.append(upperHex(h))
          decoded.append(upperHex(l))
        }
        i += 3
      } else {
        decoded.append(b)
        i += 1
      }
    }
    // 2. Segments: drop empty and `.`, resolve `..`, keep a trailing slash.
    var stack: [ArraySlice<UInt8>] = []
    let segments = decoded.split(separator: 0x2F, omittingEmptySubsequences: false).dropFirst()
    var trailing = false
    for seg in segments {
      trailing = false
      if seg.isEmpty {
        trailing = true
      } else if seg.count == 1 && seg.first == 0x2E {
        trailing = true
      } else if seg.count == 2 && seg.first == 0x2E && seg.last == 0x2E {
        if !stack.isEmpty { stack.removeLast() }
        trailing = true
      } else {
        stack.append(seg)
      }
    }
    var out: [UInt8] = [0x2F]
    for (n, seg) in stack.enumerated() {
      if n > 0 { out.append(0x2F) }
      out.append(contentsOf: seg)
    }
    if trailing && !stack.isEmpty { out.append(0x2F) }
    return out
  }

  static func hex(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: return b - 0x30
    case 0x41...0x46: return b - 0x41 + 10
    case 0x61...0x66: return b - 0x61 + 10
    default: return nil
    }
  }

  private static func upperHex(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

  private static func isUnreserved(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
      || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
  }
}
