import Wire

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
        guard i + 2 < bytes.count, Hex.value(bytes[i + 1]) != nil, Hex.value(bytes[i + 2]) != nil
        else {
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
      if b == 0x25, i + 2 < input.count, let h = Hex.value(input[i + 1]),
        let l = Hex.value(input[i + 2])
      {
        let v = h << 4 | l
        if isUnreserved(v) {
          decoded.append(v)
        } else {
          decoded.append(0x25)
          decoded.append(Hex.digit(h))
          decoded.append(Hex.digit(l))
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

  private static func isUnreserved(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
      || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
  }
}

/// The canonical reading of a path: what the most liberal upstreams make of it. Path rules are
/// checked against it as well as against the RFC 3986 form (`PathNormalizer`), because `deny`
/// must hold whatever the upstream is (Tomcat, Spring, IIS, a WSGI server), and an allow
/// route's prefix must hold under every reading.
///
/// The steps, on the path part (before `?`):
/// 1. percent-decoding, repeated while it changes something, at most `maxDecodePasses` times
///    (`%2F` → `/`, `%5C` → `\`, `%252F` → `%2F` → `/`); a path that still decodes further is
///    `ambiguous`;
/// 2. `/` and `\` both end a segment; empty segments are dropped;
/// 3. `;params` are cut from each segment (`/admin;x` → `/admin`);
/// 4. spaces and tabs are trimmed from both ends of each segment; a segment that is then `.`
///    or `..` is a dot-segment (`hasDotSegment`);
/// 5. for deny (`fold`): trailing dots and blanks are trimmed too (IIS and .NET drop them) and
///    ASCII letters are lowercased; for allow the segment bytes stay as decoded in step 1.
/// `resolved` applies the dot-segments (`..` pops), `literal` keeps them as segments. Both are
/// `/seg/seg` (the root is empty), without a trailing slash.
struct CanonicalPath: Equatable {
  static let maxDecodePasses = 4

  var resolved: [UInt8] = []
  var literal: [UInt8] = []
  var hasDotSegment = false
  var ambiguous = false

  init<C: Collection>(_ path: C, fold: Bool) where C.Element == UInt8 {
    var bytes = Array(path)
    var passes = 0
    while PathNormalizer.hasEscape(bytes) {
      if passes == Self.maxDecodePasses {
        ambiguous = true
        break
      }
      bytes = PathNormalizer.percentDecode(bytes)
      passes += 1
    }
    var stack: [ArraySlice<UInt8>] = []
    var start = 0
    for i in 0...bytes.count {
      guard i == bytes.count || bytes[i] == 0x2F || bytes[i] == 0x5C else { continue }
      var seg = bytes[start..<i]
      start = i + 1
      if let semicolon = seg.firstIndex(of: 0x3B) { seg = seg[..<semicolon] }
      while let f = seg.first, Self.isBlank(f) { seg = seg.dropFirst() }
      while let l = seg.last, Self.isBlank(l) { seg = seg.dropLast() }
      if seg.elementsEqual([0x2E]) || seg.elementsEqual([0x2E, 0x2E]) {
        hasDotSegment = true
        Self.append(seg, to: &literal)
        if seg.count == 2 && !stack.isEmpty { stack.removeLast() }
        continue
      }
      if fold {
        while let l = seg.last, l == 0x2E || Self.isBlank(l) { seg = seg.dropLast() }
      }
      if seg.isEmpty { continue }
      if fold && seg.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) {
        seg = ArraySlice(seg.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 })
      }
      Self.append(seg, to: &literal)
      stack.append(seg)
    }
    for seg in stack { Self.append(seg, to: &resolved) }
  }

  /// Whole-segment prefix match: `candidate` is `prefix` or starts with `prefix` + `/`.
  static func hasPrefix<C: Collection>(_ candidate: C, _ prefix: [UInt8]) -> Bool
  where C.Element == UInt8 {
    var i = candidate.startIndex
    for b in prefix {
      guard i != candidate.endIndex, candidate[i] == b else { return false }
      i = candidate.index(after: i)
    }
    return i == candidate.endIndex || candidate[i] == 0x2F
  }

  private static func append(_ seg: ArraySlice<UInt8>, to out: inout [UInt8]) {
    out.append(0x2F)
    out.append(contentsOf: seg)
  }

  private static func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
}

extension PathNormalizer {
  /// Whether the path could read differently to some upstream than its RFC 3986 form does:
  /// it holds `%`, `;`, `\`, a blank or control byte, a byte ≥ 0x80, an empty segment or a
  /// segment that starts or ends with `.`. When it does not, every reading of it is the
  /// bytes themselves (save for case, see `hasUpper`).
  static func needsCanonical<C: Collection>(_ path: C) -> Bool where C.Element == UInt8 {
    var previous: UInt8 = 0
    for b in path {
      switch b {
      case 0x25, 0x3B, 0x5C: return true
      case 0x2F where previous == 0x2F || previous == 0x2E: return true
      case 0x2E where previous == 0x2F: return true
      default:
        if b <= 0x20 || b >= 0x7F { return true }
      }
      previous = b
    }
    return previous == 0x2E
  }

  static func hasUpper<C: Collection>(_ path: C) -> Bool where C.Element == UInt8 {
    path.contains { $0 >= 0x41 && $0 <= 0x5A }
  }

  /// Whether a valid `%XX` escape is in `bytes`.
  static func hasEscape(_ bytes: [UInt8]) -> Bool {
    var i = 0
    while i + 2 < bytes.count {
      if bytes[i] == 0x25, Hex.value(bytes[i + 1]) != nil, Hex.value(bytes[i + 2]) != nil {
        return true
      }
      i += 1
    }
    return false
  }

  /// One pass of percent-decoding; invalid escapes stay as they are.
  static func percentDecode(_ bytes: [UInt8]) -> [UInt8] { PercentDecoding.decode(bytes) }
}
