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
