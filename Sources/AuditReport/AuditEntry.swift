import Wire

/// The fields of one audit-log line that the report reads (see `EgressPolicy.AuditFormatter`).
public struct AuditEntry: Sendable, Equatable {
  public var time: Double = 0
  public var client: String?
  public var method = ""
  /// `http`, `https`, or `connect` for a tunnel.
  public var scheme = ""
  public var host = ""
  public var port: Int?
  public var path = ""
  /// 1-based, as `check` numbers routes; nil when none matched.
  public var route: Int?
  /// `allow`, `deny` or `report`.
  public var decision = ""
  public var reason: String?
  /// The minted token's scope set (OAuth2) or audience (OIDC), when one was injected.
  public var scopes: String?
  public var audience: String?
  public var status = 0

  public init() {}

  /// Reads one JSON line. nil when it is not a JSON object with at least `time`, `method`,
  /// `host` and `decision` (a line from another log, or cut short by a crash).
  public static func parse(_ line: UnsafeBufferPointer<UInt8>) -> AuditEntry? {
    var reader = FlatJSONReader(line)
    var entry = AuditEntry()
    var seen = 0
    let ok = reader.readObject { key, value in
      switch key {
      case "time":
        guard case .string(let s) = value, let t = UTCTimestamp.parse(s) else { return false }
        entry.time = t
        seen |= 1
      case "client": entry.client = value.string
      case "method":
        guard let s = value.string else { return false }
        entry.method = s
        seen |= 2
      case "scheme": entry.scheme = value.string ?? ""
      case "host":
        guard let s = value.string else { return false }
        entry.host = s
        seen |= 4
      case "port": entry.port = value.int
      case "path": entry.path = value.string ?? ""
      case "route": entry.route = value.int
      case "decision":
        guard let s = value.string else { return false }
        entry.decision = s
        seen |= 8
      case "reason": entry.reason = value.string
      case "scopes": entry.scopes = value.string
      case "audience": entry.audience = value.string
      case "status": entry.status = value.int ?? 0
      default: break
      }
      return true
    }
    return ok && seen == 15 ? entry : nil
  }
}

/// A value in a flat JSON object: what audit lines hold (no nested objects or arrays).
enum FlatJSONValue {
  case string(String)
  case number(Double)
  case bool(Bool)
  case null
  /// A nested array or object, skipped.
  case other

  var string: String? {
    if case .string(let s) = self { return s }
    return nil
  }
  var int: Int? {
    if case .number(let d) = self, d.rounded() == d, abs(d) < 1e15 { return Int(d) }
    return nil
  }
}

/// A strict reader of one flat JSON object (RFC 8259 strings, numbers, literals); nested values
/// are skipped with their brackets balanced. Hand-written so a 1 GB log is read without building
/// a Foundation object per line.
struct FlatJSONReader {
  let b: UnsafeBufferPointer<UInt8>
  var i = 0

  init(_ bytes: UnsafeBufferPointer<UInt8>) { b = bytes }

  /// Calls `field` for each member; false when the text is not one JSON object or `field`
  /// refused a value.
  mutating func readObject(_ field: (String, FlatJSONValue) -> Bool) -> Bool {
    skipSpace()
    guard take(0x7B) else { return false }
    skipSpace()
    if take(0x7D) { return atEnd() }
    while true {
      skipSpace()
      guard let key = readString() else { return false }
      skipSpace()
      guard take(0x3A) else { return false }
      skipSpace()
      guard let value = readValue(), field(key, value) else { return false }
      skipSpace()
      if take(0x2C) { continue }
      guard take(0x7D) else { return false }
      return atEnd()
    }
  }

  private mutating func atEnd() -> Bool {
    skipSpace()
    return i == b.count
  }

  private mutating func take(_ c: UInt8) -> Bool {
    guard i < b.count, b[i] == c else { return false }
    i += 1
    return true
  }

  private mutating func skipSpace() {
    while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0D || b[i] == 0x0A { i += 1 }
  }

  private mutating func literal(_ word: StaticString) -> Bool {
    let n = word.utf8CodeUnitCount
    guard i + n <= b.count else { return false }
    for k in 0..<n where b[i + k] != word.utf8Start[k] { return false }
    i += n
    return true
  }

  private mutating func readValue() -> FlatJSONValue? {
    guard i < b.count else { return nil }
    switch b[i] {
    case 0x22: return readString().map { .string($0) }
    case 0x74: return literal("true") ? .bool(true) : nil
    case 0x66: return literal("false") ? .bool(false) : nil
    case 0x6E: return literal("null") ? .null : nil
    case 0x7B, 0x5B: return skipNested() ? .other : nil
    default: return readNumber().map { .number($0) }
    }
  }

  private mutating func readNumber() -> Double? {
    let start = i
    while i < b.count {
      switch b[i] {
      case 0x30...0x39, 0x2B, 0x2D, 0x2E, 0x45, 0x65: i += 1
      default:
        return Double(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
      }
    }
    return Double(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
  }

  private mutating func skipNested() -> Bool {
    var depth = 0
    while i < b.count {
      let c = b[i]
      if c == 0x22 {
        guard readString() != nil else { return false }
        continue
      }
      i += 1
      if c == 0x7B || c == 0x5B { depth += 1 }
      if c == 0x7D || c == 0x5D {
        depth -= 1
        if depth == 0 { return true }
      }
    }
    return false
  }

  private mutating func readString() -> String? {
    guard take(0x22) else { return nil }
    let start = i
    // Fast path: no escapes.
    while i < b.count, b[i] != 0x22, b[i] != 0x5C, b[i] >= 0x20 { i += 1 }
    if i < b.count, b[i] == 0x22 {
      defer { i += 1 }
      return String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
    }
    var out = Array(b[start..<i])
    while i < b.count {
      let c = b[i]
      i += 1
      switch c {
      case 0x22: return String(decoding: out, as: UTF8.self)
      case 0x5C:
        guard i < b.count else { return nil }
        let e = b[i]
        i += 1
        switch e {
        case 0x22, 0x5C, 0x2F: out.append(e)
        case 0x62: out.append(0x08)
        case 0x66: out.append(0x0C)
        case 0x6E: out.append(0x0A)
        case 0x72: out.append(0x0D)
        case 0x74: out.append(0x09)
        case 0x75:
          guard var scalar = hex4() else { return nil }
          if (0xD800..<0xDC00).contains(scalar), literal("\\u"), let low = hex4(),
            (0xDC00..<0xE000).contains(low)
          {
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          }
          let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
          out.append(contentsOf: Array(String(Character(u)).utf8))
        default: return nil
        }
      default:
        guard c >= 0x20 else { return nil }
        out.append(c)
      }
    }
    return nil
  }

  private mutating func hex4() -> UInt32? {
    guard i + 4 <= b.count else { return nil }
    var v: UInt32 = 0
    for k in 0..<4 {
      guard let h = Hex.value(b[i + k]) else { return nil }
      v = v << 4 | UInt32(h)
    }
    i += 4
    return v
  }
}
