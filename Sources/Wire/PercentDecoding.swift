/// Percent-decoding (RFC 3986 §2.1), one pass: the one decoder behind path matching, the audit
/// log's query redaction and the placeholder screen. An invalid escape stays as it is.
public enum PercentDecoding {
  /// `plusAsSpace`: also read `+` as a space, as HTML form (query) encoding does.
  public static func decode<C: Collection<UInt8>>(_ bytes: C, plusAsSpace: Bool = false)
    -> [UInt8]
  {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = bytes.startIndex
    while i != bytes.endIndex {
      let b = bytes[i]
      if b == 0x25 {
        let hi = bytes.index(after: i)
        if hi != bytes.endIndex, let h = Hex.value(bytes[hi]) {
          let lo = bytes.index(after: hi)
          if lo != bytes.endIndex, let l = Hex.value(bytes[lo]) {
            out.append(h << 4 | l)
            i = bytes.index(after: lo)
            continue
          }
        }
      }
      out.append(plusAsSpace && b == 0x2B ? 0x20 : b)
      i = bytes.index(after: i)
    }
    return out
  }
}
