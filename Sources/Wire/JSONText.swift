/// JSON string literals: the one escaper for everything credproxy writes as JSON (audit and
/// access logs, token requests, JWT claims).
public enum JSONText {
  /// `s` as a JSON string literal.
  public static func quoted(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count + 2)
    appendQuoted(s, to: &out)
    return out
  }

  /// Appends `s` as a JSON string literal: `"`, `\` and control characters escaped (`\n`,
  /// `\u0001`), DEL and U+2028/U+2029 too, so a line is safe to embed in JavaScript.
  public static func appendQuoted(_ s: String, to out: inout String) {
    out += "\""
    for u in s.unicodeScalars {
      switch u {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      default:
        if u.value < 0x20 || u.value == 0x7F || u.value == 0x2028 || u.value == 0x2029 {
          out += "\\u"
          for shift in stride(from: 12, through: 0, by: -4) {
            let d = Hex.digit(UInt8((u.value >> UInt32(shift)) & 0xF), uppercase: false)
            out.unicodeScalars.append(Unicode.Scalar(d))
          }
        } else {
          out.unicodeScalars.append(u)
        }
      }
    }
    out += "\""
  }
}
