/// Text from outside (a request, a log line) made safe to show to a person: what a terminal or a
/// log viewer would act on instead of display is replaced by `?`.
public enum Printable {
  /// C0 controls (newline and escape included), DEL, C1 controls, and the Unicode line and
  /// paragraph separators (which some viewers break lines at).
  @inline(__always)
  public static func isControl(_ u: Unicode.Scalar) -> Bool {
    u.value < 0x20 || (u.value >= 0x7F && u.value <= 0x9F) || u.value == 0x2028
      || u.value == 0x2029
  }

  /// `s` with every control scalar replaced by `?`.
  public static func text(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: isControl) else { return s }
    var out = String.UnicodeScalarView()
    for u in s.unicodeScalars { out.append(isControl(u) ? "?" : u) }
    return String(out)
  }
}
