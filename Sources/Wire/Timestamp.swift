/// UTC timestamps in ISO 8601 / RFC 3339 form without Foundation's formatters (slow, and not
/// cheap to share): the one printer behind the access log, the audit log, the status page and
/// `credproxy token`.
public enum UTCTimestamp {
  /// `2026-11-26T14:00:00.123Z` for seconds since the epoch, rounded to the millisecond.
  public static func iso8601(_ seconds: Double) -> String {
    guard seconds.isFinite, abs(seconds) < 1e12 else { return "1970-01-01T00:00:00.000Z" }
    let totalMs = Int64((seconds * 1000).rounded())
    var whole = totalMs / 1000
    var ms = totalMs % 1000
    if ms < 0 {
      ms += 1000
      whole -= 1
    }
    return iso8601(wholeSeconds: whole, milliseconds: Int(ms))
  }

  /// `2026-11-26T14:00:00.123Z`, or `2026-11-26T14:00:00Z` when `milliseconds` is nil.
  /// `milliseconds` must be 0–999.
  public static func iso8601(wholeSeconds: Int64, milliseconds: Int?) -> String {
    var days = wholeSeconds / 86_400
    var secs = wholeSeconds % 86_400
    if secs < 0 {
      secs += 86_400
      days -= 1
    }
    let (y, m, d) = civil(days)
    let h = Int(secs / 3600)
    let mi = Int(secs / 60 % 60)
    let s = Int(secs % 60)
    guard y >= 0 && y <= 9999 else {
      // Outside four-digit years: rare enough to print the slow way.
      func pad(_ v: Int, _ n: Int) -> String {
        let t = String(v)
        return t.count >= n ? t : String(repeating: "0", count: n - t.count) + t
      }
      let frac = milliseconds.map { "." + pad($0, 3) } ?? ""
      return
        "\(pad(Int(y), 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2))\(frac)Z"
    }
    let length = milliseconds == nil ? 20 : 24
    return String(unsafeUninitializedCapacity: length) { out in
      func put(_ v: Int, _ at: Int, _ width: Int) {
        var v = v
        var k = at + width - 1
        while k >= at {
          out[k] = UInt8(0x30 + v % 10)
          v /= 10
          k -= 1
        }
      }
      put(Int(y), 0, 4)
      out[4] = 0x2D
      put(m, 5, 2)
      out[7] = 0x2D
      put(d, 8, 2)
      out[10] = 0x54
      put(h, 11, 2)
      out[13] = 0x3A
      put(mi, 14, 2)
      out[16] = 0x3A
      put(s, 17, 2)
      if let milliseconds {
        out[19] = 0x2E
        put(milliseconds, 20, 3)
      }
      out[length - 1] = 0x5A
      return length
    }
  }

  /// Seconds since the epoch for `2026-11-26T14:00:00.123Z` (fraction optional, any number of
  /// digits; `Z` or `+HH:MM`/`-HH:MM`), or a date alone (`2026-11-26`, midnight UTC); nil when the
  /// text is not one of these forms. The reader of what `iso8601` prints (`credproxy report`).
  public static func parse(_ text: String) -> Double? {
    let b = Array(text.utf8)
    func digits(_ at: Int, _ n: Int) -> Int? {
      guard at + n <= b.count else { return nil }
      var v = 0
      for i in at..<(at + n) {
        guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
        v = v * 10 + Int(b[i] - 0x30)
      }
      return v
    }
    guard let y = digits(0, 4), b.count >= 10, b[4] == 0x2D, let m = digits(5, 2), b[7] == 0x2D,
      let d = digits(8, 2), (1...12).contains(m), (1...31).contains(d)
    else { return nil }
    var seconds = Double(days(year: Int64(y), month: m, day: d) * 86_400)
    if b.count == 10 { return seconds }
    guard b.count >= 20, b[10] == 0x54 || b[10] == 0x20, let h = digits(11, 2), b[13] == 0x3A,
      let mi = digits(14, 2), b[16] == 0x3A, let s = digits(17, 2), h < 24, mi < 60, s < 61
    else { return nil }
    seconds += Double(h * 3600 + mi * 60 + s)
    var i = 19
    if b[i] == 0x2E {
      var scale = 0.1
      i += 1
      let start = i
      while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
        seconds += Double(b[i] - 0x30) * scale
        scale /= 10
        i += 1
      }
      guard i > start else { return nil }
    }
    guard i < b.count else { return nil }
    if b[i] == 0x5A || b[i] == 0x7A { return i + 1 == b.count ? seconds : nil }
    guard b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, let oh = digits(i + 1, 2),
      b[i + 3] == 0x3A, let om = digits(i + 4, 2)
    else { return nil }
    let offset = Double(oh * 3600 + om * 60)
    return b[i] == 0x2B ? seconds - offset : seconds + offset
  }

  /// Days since 1970-01-01 for a civil date (the inverse of `civil`, same algorithm).
  static func days(year: Int64, month: Int, day: Int) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = Int64(month > 2 ? month - 3 : month + 9)
    let doy = (153 * mp + 2) / 5 + Int64(day) - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
  }

  /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
  static func civil(_ days: Int64) -> (year: Int64, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    return (y, Int(m), Int(d))
  }
}
