/// Hexadecimal digits: the one decoder behind percent-decoding, chunk sizes and IPv6 groups.
public enum Hex {
  /// The value of one hex digit (`0-9`, `a-f`, `A-F`); nil for any other byte.
  @inlinable @inline(__always)
  public static func value(_ b: UInt8) -> UInt8? {
    switch b {
    case 0x30...0x39: return b &- 0x30
    case 0x41...0x46: return b &- 0x41 &+ 10
    case 0x61...0x66: return b &- 0x61 &+ 10
    default: return nil
    }
  }

  /// The digit for a value 0–15 (`0-9`, then `A-F` or `a-f`).
  @inlinable @inline(__always)
  public static func digit(_ v: UInt8, uppercase: Bool = true) -> UInt8 {
    v < 10 ? 0x30 &+ v : (uppercase ? 0x41 : 0x61) &+ v &- 10
  }

  /// Two digits per byte.
  public static func encode<C: Collection>(_ bytes: C, uppercase: Bool = false) -> String
  where C.Element == UInt8 {
    String(unsafeUninitializedCapacity: bytes.count * 2) { out in
      var k = 0
      for b in bytes {
        out[k] = digit(b >> 4, uppercase: uppercase)
        out[k + 1] = digit(b & 0xF, uppercase: uppercase)
        k += 2
      }
      return k
    }
  }

  /// The bytes of an even number of hex digits (either case); nil otherwise.
  public static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
    let u = text.utf8
    guard u.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(u.count / 2)
    var it = u.makeIterator()
    while let h = it.next() {
      guard let hv = value(h), let l = it.next(), let lv = value(l) else { return nil }
      out.append(hv << 4 | lv)
    }
    return out
  }
}
