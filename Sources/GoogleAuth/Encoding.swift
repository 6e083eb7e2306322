import Foundation
import Wire

/// Unpadded base64url (RFC 4648 §5), as JWT segments use.
public enum Base64URL {
  private static let alphabet = Array(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

  /// Unpadded base64url. Works on bytes: JWTs and keys are kilobytes, and a Character-by-
  /// Character version showed in profiles of every OIDC-identified request.
  public static func encode(_ bytes: some Sequence<UInt8>) -> String {
    let input = Array(bytes)
    var out = [UInt8]()
    out.reserveCapacity((input.count * 4 + 2) / 3)
    func put(_ n: UInt32, _ count: Int) {
      for shift in stride(from: 18, to: 18 - 6 * count, by: -6) {
        out.append(alphabet[Int((n >> UInt32(shift)) & 0x3F)])
      }
    }
    var i = 0
    while i + 3 <= input.count {
      put(UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2]), 4)
      i += 3
    }
    switch input.count - i {
    case 1: put(UInt32(input[i]) << 16, 2)
    case 2: put(UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8, 3)
    default: break
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The one spelling JWS allows (RFC 7515 §2): unpadded, spare bits zero. nil for anything
  /// else, so a signed token has exactly one text form.
  public static func decodeCanonical(_ text: some StringProtocol) -> [UInt8]? {
    decode(text, canonical: true)
  }

  /// Decodes padded or unpadded base64url; nil on any character outside the alphabet.
  public static func decode(_ text: some StringProtocol) -> [UInt8]? {
    decode(text, canonical: false)
  }

  private static func decode(_ text: some StringProtocol, canonical: Bool) -> [UInt8]? {
    Base64.decode(
      text.utf8, alphabet: .url, padding: canonical ? .forbidden : .ignored,
      canonicalBits: canonical)
  }
}

/// Percent-encoding for `application/x-www-form-urlencoded` bodies and URL query components.
public enum FormURLEncoding {
  /// `a=b&c=d`, each name and value escaped with `escape`.
  public static func encode(_ pairs: [(String, String)]) -> String {
    pairs.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
  }

  /// Form escaping (WHATWG / Python `quote_plus`): `A-Z a-z 0-9 - . _ ~` stay, space becomes `+`,
  /// every other UTF-8 byte becomes `%XX` (upper-case hex).
  public static func escape(_ text: String) -> String {
    percentEscape(text, spaceAsPlus: true, keep: [])
  }

  /// A URL query or path component: like `escape` but a space becomes `%20`, and the bytes in
  /// `keep` are left as they are.
  public static func queryComponent(_ text: String, keep: Set<UInt8> = []) -> String {
    percentEscape(text, spaceAsPlus: false, keep: keep)
  }

  private static let hexDigits = Array("0123456789ABCDEF".utf8)

  private static func percentEscape(_ text: String, spaceAsPlus: Bool, keep: Set<UInt8>) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(text.utf8.count)
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
        UInt8(ascii: "_"), UInt8(ascii: "~"):
        out.append(byte)
      case UInt8(ascii: " ") where spaceAsPlus:
        out.append(UInt8(ascii: "+"))
      case _ where keep.contains(byte):
        out.append(byte)
      default:
        out.append(UInt8(ascii: "%"))
        out.append(hexDigits[Int(byte >> 4)])
        out.append(hexDigits[Int(byte & 0x0F)])
      }
    }
    return String(decoding: out, as: UTF8.self)
  }
}

/// A minimal JSON value with ordered object members, for bodies whose bytes we want to control
/// (JWT header and claims, IAM request bodies). Parsing uses `JSONSerialization`.
public indirect enum JSONValue: Sendable, Equatable {
  case string(String)
  case int(Int)
  case bool(Bool)
  case array([JSONValue])
  case object([Member])

  public struct Member: Sendable, Equatable {
    public var name: String
    public var value: JSONValue
    public init(_ name: String, _ value: JSONValue) {
      self.name = name
      self.value = value
    }
  }

  /// Compact serialisation, members in the given order.
  public var serialized: String {
    var out = ""
    write(into: &out)
    return out
  }

  public var bytes: [UInt8] { Array(serialized.utf8) }

  private func write(into out: inout String) {
    switch self {
    case .string(let text): JSONText.appendQuoted(text, to: &out)
    case .int(let number): out += String(number)
    case .bool(let flag): out += flag ? "true" : "false"
    case .array(let items):
      out += "["
      for (index, item) in items.enumerated() {
        if index > 0 { out += "," }
        item.write(into: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (index, member) in members.enumerated() {
        if index > 0 { out += "," }
        JSONText.appendQuoted(member.name, to: &out)
        out += ":"
        member.value.write(into: &out)
      }
      out += "}"
    }
  }
}

/// Reading loosely typed JSON produced by `JSONSerialization`.
public enum JSONReading {
  /// The top-level object, or nil when the bytes are not a JSON object.
  static func object(_ bytes: [UInt8]) -> [String: Any]? {
    guard !bytes.isEmpty,
      let value = try? JSONSerialization.jsonObject(with: Data(bytes), options: [])
    else { return nil }
    return value as? [String: Any]
  }

  /// The top-level object, or nil when the bytes are not a JSON object or any object in them
  /// names a member twice. `JSONSerialization` keeps the last silently, other parsers the first:
  /// for signed input (a JWT) whose meaning must not depend on the parser.
  public static func objectWithUniqueMembers(_ bytes: [UInt8]) -> [String: Any]? {
    guard let object = object(bytes), membersWritten(bytes) == membersKept(object) else {
      return nil
    }
    return object
  }

  /// How many member names the parsed value kept, in every object at every depth: fewer than
  /// were written means some name came twice (as the parser compares names, escapes decoded).
  private static func membersKept(_ value: Any) -> Int {
    if let object = value as? [String: Any] {
      return object.values.reduce(object.count) { $0 + membersKept($1) }
    }
    if let array = value as? [Any] { return array.reduce(0) { $0 + membersKept($1) } }
    return 0
  }

  /// How many member names the text writes: strings in name position, found with a stack of
  /// the open containers (the text is JSON that `JSONSerialization` accepted). Linear.
  private static func membersWritten(_ bytes: [UInt8]) -> Int {
    // One entry per open container: whether it is an object, and whether a name comes next.
    var open: [(isObject: Bool, expectingName: Bool)] = []
    var count = 0
    var i = 0
    while i < bytes.count {
      switch bytes[i] {
      case UInt8(ascii: "{"): open.append((true, true))
      case UInt8(ascii: "["): open.append((false, false))
      case UInt8(ascii: "}"), UInt8(ascii: "]"): _ = open.popLast()
      case UInt8(ascii: ","):
        if let last = open.indices.last, open[last].isObject { open[last].expectingName = true }
      case UInt8(ascii: "\""):
        if let last = open.indices.last, open[last].expectingName {
          count += 1
          open[last].expectingName = false
        }
        i += 1
        while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
          i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
        }
      default: break
      }
      i += 1
    }
    return count
  }

  static func object(_ data: Data) -> [String: Any]? {
    guard !data.isEmpty, let value = try? JSONSerialization.jsonObject(with: data, options: [])
    else { return nil }
    return value as? [String: Any]
  }

  /// A JSON number (not a boolean).
  static func number(_ value: Any?) -> Double? {
    guard let value, !(value is String) else { return nil }
    if let number = value as? NSNumber {
      if isBoolean(number) { return nil }
      return number.doubleValue
    }
    return nil
  }

  static func isBoolean(_ number: NSNumber) -> Bool {
    let type = String(cString: number.objCType)
    return type == "c" || type == "B"
  }

  /// A number, or a string holding a decimal number (as `expires_in` sometimes is).
  static func numberOrNumericString(_ value: Any?) -> Double? {
    if let number = number(value) { return number }
    if let text = value as? String {
      let trimmed = text.trimmingCharacters(in: .whitespaces)
      guard !trimmed.isEmpty,
        trimmed.utf8.allSatisfy({
          ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || $0 == UInt8(ascii: ".")
        })
      else { return nil }
      return Double(trimmed)
    }
    return nil
  }
}

/// Text that is safe to put in a log line or error message: printable ASCII only, truncated.
func sanitizedForMessage(_ text: String, limit: Int) -> String {
  ErrorText.sanitize(text, secrets: [], limit: limit)
}

/// RFC 3339 timestamps (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.123456789+02:00`) to seconds
/// since the epoch. No `DateFormatter`: this is pure and thread-safe.
public enum RFC3339 {
  public static func parse(_ text: String) -> Double? {
    let bytes = Array(text.utf8)
    var index = 0
    func digits(_ count: Int) -> Int? {
      guard index + count <= bytes.count else { return nil }
      var value = 0
      for _ in 0..<count {
        let byte = bytes[index]
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        value = value * 10 + Int(byte - UInt8(ascii: "0"))
        index += 1
      }
      return value
    }
    func expect(_ characters: String) -> Bool {
      guard index < bytes.count else { return false }
      let byte = bytes[index]
      guard characters.utf8.contains(byte) else { return false }
      index += 1
      return true
    }
    guard let year = digits(4), expect("-"), let month = digits(2), expect("-"),
      let day = digits(2), expect("Tt "), let hour = digits(2), expect(":"),
      let minute = digits(2), expect(":"), let second = digits(2)
    else { return nil }
    guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
    else { return nil }
    var fraction = 0.0
    if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
      index += 1
      var scale = 0.1
      let start = index
      while index < bytes.count, bytes[index] >= UInt8(ascii: "0"),
        bytes[index] <= UInt8(ascii: "9")
      {
        fraction += Double(bytes[index] - UInt8(ascii: "0")) * scale
        scale /= 10
        index += 1
      }
      guard index > start else { return nil }
    }
    var offset = 0
    guard index < bytes.count else { return nil }
    if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
      index += 1
    } else {
      let sign = bytes[index]
      guard sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { return nil }
      index += 1
      guard let offsetHours = digits(2), expect(":"), let offsetMinutes = digits(2),
        offsetHours < 24, offsetMinutes < 60
      else { return nil }
      offset = (offsetHours * 60 + offsetMinutes) * 60 * (sign == UInt8(ascii: "-") ? -1 : 1)
    }
    guard index == bytes.count else { return nil }
    let days = daysFromCivil(year: year, month: month, day: day)
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
    return Double(seconds) + fraction
  }

  /// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
  static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
  }
}
