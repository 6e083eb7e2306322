/// HTTP field names whose meaning is fixed by the protocol, not by the application.
public enum HeaderNames {
  /// Hop-by-hop fields: they describe one connection, not the message (RFC 9110 §7.6.1, plus
  /// the legacy `keep-alive` and `proxy-connection`), so a proxy never forwards them.
  /// `proxy-authorization`/`proxy-authenticate` are per-hop too, each in its own direction.
  public static let hopByHop: [String] = [
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
  ]

  /// Message framing: re-made by whoever frames the next hop, never copied across.
  public static let framing: [String] = ["transfer-encoding", "content-length"]

  /// A field name: a non-empty RFC 9110 token (DIGIT, ALPHA, ``!#$%&'*+-.^_`|~``).
  public static func isToken<S: StringProtocol>(_ s: S) -> Bool {
    guard !s.isEmpty else { return false }
    return s.utf8.allSatisfy { b in
      (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
        || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
  }

  /// `value` without leading and trailing spaces and tabs (RFC 9110 OWS), scanned as bytes:
  /// credentials in a field run to kilobytes, and Foundation's `trimmingCharacters` walks them
  /// as UTF-16 (it showed in profiles at a third of an OIDC-identified request).
  public static func trimmingOWS(_ value: Substring) -> Substring {
    let bytes = value.utf8
    let isOWS = { (b: UInt8) in b == 0x20 || b == 0x09 }
    guard let first = bytes.firstIndex(where: { !isOWS($0) }),
      let last = bytes.lastIndex(where: { !isOWS($0) })
    else { return value[value.endIndex...] }
    // Both ends sit next to ASCII (or the string's ends), so they are scalar boundaries.
    return value[first..<bytes.index(after: last)]
  }

  /// `name` equals `lowercase` ignoring ASCII case (`lowercase` must be lowercase ASCII).
  /// Compares bytes: no lowercased copy is made.
  @inlinable
  public static func equal(_ name: String, _ lowercase: String) -> Bool {
    guard name.utf8.count == lowercase.utf8.count else { return false }
    // Native strings are contiguous UTF-8: compare the bytes directly (this runs for every
    // header of every request and response; iterating two UTF8Views showed in profiles).
    if let same = name.utf8.withContiguousStorageIfAvailable({ a in
      lowercase.utf8.withContiguousStorageIfAvailable { b in foldedEqual(a, b) }
    }), let same {
      return same
    }
    for (c, l) in zip(name.utf8, lowercase.utf8) {
      let folded = c >= 0x41 && c <= 0x5A ? c | 0x20 : c
      if folded != l { return false }
    }
    return true
  }

  @inlinable
  static func foldedEqual(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool
  {
    var i = 0
    while i < a.count {
      let c = a[i]
      if (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) != b[i] { return false }
      i &+= 1
    }
    return true
  }
}

/// A fixed set of lowercase field names, matched ASCII-case-insensitively on bytes. Bucketed by
/// length: a lookup compares against the one or two names of the same length, not every name
/// (a list scan per field of every request and response showed in profiles).
public struct HeaderNameSet: Sendable {
  private let byLength: [[[UInt8]]]

  public init(_ lowercaseNames: [String]) {
    var buckets: [[[UInt8]]] = Array(
      repeating: [], count: (lowercaseNames.map(\.utf8.count).max() ?? 0) + 1)
    for name in lowercaseNames { buckets[name.utf8.count].append(Array(name.utf8)) }
    byLength = buckets
  }

  public func contains(_ name: String) -> Bool {
    let n = name.utf8.count
    guard n < byLength.count, !byLength[n].isEmpty else { return false }
    let bucket = byLength[n]
    if let found = name.utf8.withContiguousStorageIfAvailable({ a in
      bucket.contains { b in b.withUnsafeBufferPointer { HeaderNames.foldedEqual(a, $0) } }
    }) {
      return found
    }
    return bucket.contains { b in
      zip(name.utf8, b).allSatisfy { c, l in (c >= 0x41 && c <= 0x5A ? c | 0x20 : c) == l }
    }
  }
}
