/// RFC 4648 base64 in both alphabets, on bytes: the one decoder behind proxy Basic credentials
/// (standard alphabet) and JWT segments and JWKs (base64url), each caller choosing how strict.
public enum Base64 {
  public enum Alphabet: Sendable {
    /// `+` and `/` (RFC 4648 §4).
    case standard
    /// `-` and `_` (RFC 4648 §5).
    case url
  }

  public enum Padding: Sendable {
    /// No `=` at all (JWS segments).
    case forbidden
    /// At most two `=`, only at the end, and then the length is a multiple of four.
    case optional
    /// Every `=` is skipped (keys and claims we only read).
    case ignored
  }

  private static let standardValues = table("+/")
  private static let urlValues = table("-_")

  private static func table(_ last2: String) -> [UInt8] {
    let alphabet =
      Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
      + Array(last2.utf8)
    var values = [UInt8](repeating: 0xFF, count: 256)
    for (i, c) in alphabet.enumerated() { values[Int(c)] = UInt8(i) }
    return values
  }

  /// The decoded bytes, or nil for a byte outside the alphabet, padding `padding` does not
  /// allow, a lone trailing character, or (with `canonicalBits`) non-zero spare bits, which would
  /// give one value several spellings.
  public static func decode<C: Collection<UInt8>>(
    _ text: C, alphabet: Alphabet, padding: Padding, canonicalBits: Bool
  ) -> [UInt8]? {
    let values = alphabet == .url ? urlValues : standardValues
    var out = [UInt8]()
    out.reserveCapacity(text.count * 3 / 4)
    var acc: UInt32 = 0
    var pending = 0
    var padded = 0
    var length = 0
    for b in text {
      length += 1
      if b == UInt8(ascii: "=") {
        if padding == .forbidden { return nil }
        padded += 1
        continue
      }
      // Data after padding: only `.ignored` takes it.
      if padded > 0 && padding != .ignored { return nil }
      let v = values[Int(b)]
      guard v != 0xFF else { return nil }
      acc = acc << 6 | UInt32(v)
      pending += 1
      if pending == 4 {
        out.append(UInt8(truncatingIfNeeded: acc >> 16))
        out.append(UInt8(truncatingIfNeeded: acc >> 8))
        out.append(UInt8(truncatingIfNeeded: acc))
        acc = 0
        pending = 0
      }
    }
    if padding == .optional && padded > 0 && (padded > 2 || length % 4 != 0) { return nil }
    switch pending {
    case 1:
      return nil
    case 2:
      if canonicalBits && acc & 0xF != 0 { return nil }
      out.append(UInt8(truncatingIfNeeded: acc >> 4))
    case 3:
      if canonicalBits && acc & 0x3 != 0 { return nil }
      out.append(UInt8(truncatingIfNeeded: acc >> 10))
      out.append(UInt8(truncatingIfNeeded: acc >> 2))
    default:
      break
    }
    return out
  }
}
