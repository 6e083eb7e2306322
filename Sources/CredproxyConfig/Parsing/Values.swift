import Wire

/// A word that does not parse as the value it should be: `message` is
/// `what is wrong; expected what`.
struct BadValue: Error {
  var message: String
  init(_ message: String) { self.message = message }
}

enum Values {
  static let durationExpected = "expected a number and a unit: ms, s, m or h (e.g. 30s, 250ms)"
  static let maxDurationMs = 30 * 24 * 3_600_000

  /// `250ms`, `30s`, `5m`, `1h` → milliseconds.
  static func duration(_ text: String) throws(BadValue) -> Int {
    let lower = text.lowercased()
    let digits = lower.prefix(while: { $0.isASCII && $0.isNumber })
    let unit = lower.dropFirst(digits.count)
    if digits.isEmpty {
      throw BadValue("invalid duration \"\(text)\"; \(durationExpected)")
    }
    let factor: Int
    switch unit {
    case "ms": factor = 1
    case "s": factor = 1000
    case "m": factor = 60_000
    case "h": factor = 3_600_000
    case "":
      throw BadValue(
        "duration \"\(text)\" has no unit; expected a unit: ms, s, m or h (e.g. \(text)s)")
    default:
      throw BadValue("invalid duration unit in \"\(text)\"; expected ms, s, m or h (e.g. 30s)")
    }
    guard let n = Int(digits), n <= maxDurationMs / factor else {
      throw BadValue("duration \"\(text)\" is too long; expected at most 720h")
    }
    if n == 0 { throw BadValue("duration \"\(text)\" is zero; expected more than 0 (e.g. 30s)") }
    return n * factor
  }

  /// `1048576`, `64k`, `10m`, `1g` (binary multiples) → bytes.
  static func size(_ text: String) throws(BadValue) -> UInt64 {
    let lower = text.lowercased()
    let digits = lower.prefix(while: { $0.isASCII && $0.isNumber })
    let unit = lower.dropFirst(digits.count)
    let expected = "expected a number of bytes, optionally with k, m or g (e.g. 64k, 10m)"
    guard !digits.isEmpty else { throw BadValue("invalid size \"\(text)\"; \(expected)") }
    let shift: UInt64
    switch unit {
    case "": shift = 0
    case "k": shift = 10
    case "m": shift = 20
    case "g": shift = 30
    default: throw BadValue("invalid size unit in \"\(text)\"; \(expected)")
    }
    guard let n = UInt64(digits), n <= (UInt64(1) << 50) >> shift else {
      throw BadValue("size \"\(text)\" is too large; expected at most 1048576g")
    }
    return n << shift
  }

  /// A DNS name (already lowercased, no trailing dot): labels of letters, digits, `-`, `_`.
  static func checkHostName(_ h: Substring) throws(BadValue) {
    if h.isEmpty { throw BadValue("missing host name; expected a name like api.example.com") }
    if h.utf8.count > 253 {
      throw BadValue("host name \"\(h)\" is too long; expected at most 253 characters")
    }
    for label in h.split(separator: ".", omittingEmptySubsequences: false) {
      if label.isEmpty {
        throw BadValue("empty label in host name \"\(h)\"; expected names like api.example.com")
      }
      if label.utf8.count > 63 {
        throw BadValue("label \"\(label)\" in \"\(h)\" is too long; expected at most 63 characters")
      }
      for b in label.utf8 {
        let ok =
          (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F
        if !ok {
          if b >= 0x80 {
            throw BadValue(
              "non-ASCII host name \"\(h)\"; expected its punycode (xn--) form")
          }
          throw BadValue(
            "invalid character in host name \"\(h)\"; expected letters, digits, - and _")
        }
      }
    }
  }

  /// True when the last label starts with a digit: an IP spelling, not a DNS name.
  static func looksNumeric(_ h: Substring) -> Bool {
    let last = h.split(separator: ".").last ?? h
    guard let b = last.utf8.first else { return false }
    return b >= 0x30 && b <= 0x39
  }

  /// Normalises a host: lowercase, trailing dot removed, IPv6 canonical (no brackets).
  /// Returns the host and whether it is an IPv6 literal.
  /// `lenientIPv4`: keep other spellings `inet_aton` accepts (`127.1`) as written.
  static func host(_ raw: Substring, bracketed: Bool, lenientIPv4: Bool = false)
    throws(BadValue) -> (String, Bool)
  {
    if bracketed {
      guard let v6 = IPText.canonicalIPv6(raw) else {
        throw BadValue("invalid IPv6 address \"[\(raw)]\"; expected e.g. [::1]")
      }
      return (v6, true)
    }
    var h = Substring(raw.lowercased())
    if h.count > 1 && h.hasSuffix(".") { h = h.dropLast() }
    if h.contains(":") {
      throw BadValue("IPv6 address \"\(raw)\" needs brackets; expected e.g. [\(raw)]")
    }
    if looksNumeric(h) {
      if lenientIPv4 && IPText.ipv4Canonical(h.utf8) == nil && IPText.ipv4Lenient(h.utf8) != nil {
        return (String(h), false)
      }
      guard let v4 = IPText.ipv4Canonical(h.utf8) else {
        throw BadValue(
          "\"\(raw)\" is not a valid IPv4 address; expected four decimal numbers like 10.0.0.1")
      }
      return (IPText.formatIPv4(v4), false)
    }
    try checkHostName(h)
    return (String(h), false)
  }

  /// `HOST:PORT`, `[V6]:PORT`, or `HOST` when the port is optional.
  static func hostPort(
    _ text: String, portRequired: Bool, allowPortZero: Bool = false, lenientIPv4: Bool = false
  )
    throws(BadValue) -> (host: String, port: Int?, isIPv6: Bool)
  {
    let usage = "expected HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)"
    var rest = Substring(text)
    let hostText: Substring
    let bracketed = rest.hasPrefix("[")
    if bracketed {
      guard let close = rest.firstIndex(of: "]") else {
        throw BadValue("missing ] in \"\(text)\"; \(usage)")
      }
      hostText = rest[rest.index(after: rest.startIndex)..<close]
      rest = rest[rest.index(after: close)...]
    } else if let colon = rest.lastIndex(of: ":") {
      hostText = rest[..<colon]
      rest = rest[colon...]
    } else {
      hostText = rest
      rest = ""
    }
    let (host, v6) = try Values.host(hostText, bracketed: bracketed, lenientIPv4: lenientIPv4)
    var port: Int?
    if rest.hasPrefix(":") {
      port = try Values.port(rest.dropFirst(), in: text, allowZero: allowPortZero)
    } else if !rest.isEmpty {
      throw BadValue("unexpected \"\(rest)\" in \"\(text)\"; \(usage)")
    }
    if portRequired && port == nil { throw BadValue("missing port in \"\(text)\"; \(usage)") }
    return (host, port, v6)
  }

  static func port(_ digits: Substring, in text: String, allowZero: Bool) throws(BadValue) -> Int {
    let range = allowZero ? "0–65535" : "1–65535"
    guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
      digits.count <= 5, let p = Int(digits), p <= 65535, allowZero || p > 0
    else {
      throw BadValue("invalid port \"\(digits)\" in \"\(text)\"; expected a number \(range)")
    }
    return p
  }

  static let patternUsage =
    "expected HOST[:PORT][/PATH-PREFIX] with HOST exact, *.suffix or *"

  /// A route pattern: `HOST[:PORT][/PATH-PREFIX]`.
  static func pattern(_ text: String) throws(BadValue) -> RoutePattern {
    func bad(_ what: String) -> BadValue {
      BadValue("invalid route pattern \"\(text)\": \(what); \(patternUsage)")
    }
    var rest = Substring(text)
    let host: RoutePattern.Host
    if rest.hasPrefix("[") {
      guard let close = rest.firstIndex(of: "]") else { throw bad("missing ]") }
      let inner = rest[rest.index(after: rest.startIndex)..<close]
      guard let v6 = IPText.canonicalIPv6(inner) else {
        throw bad("\"[\(inner)]\" is not an IPv6 address")
      }
      host = .exact(v6)
      rest = rest[rest.index(after: close)...]
    } else {
      let end = rest.firstIndex(where: { $0 == ":" || $0 == "/" }) ?? rest.endIndex
      var h = Substring(rest[..<end].lowercased())
      rest = rest[end...]
      if h.count > 1 && h.hasSuffix(".") { h = h.dropLast() }
      if h.isEmpty { throw bad("missing host") }
      if h == "*" {
        host = .any
      } else if h.hasPrefix("*.") {
        let suffix = h.dropFirst(2)
        if suffix.contains("*") { throw bad("a wildcard must be the whole leftmost label") }
        if suffix.isEmpty { throw bad("missing suffix after *.") }
        if looksNumeric(suffix) { throw bad("a wildcard cannot apply to an IP address") }
        do { try checkHostName(suffix) } catch { throw bad(error.message) }
        host = .suffix(String(suffix))
      } else if h.contains("*") {
        throw bad("a wildcard must be the whole leftmost label (*.example.com) or the whole host")
      } else {
        do {
          let (name, _) = try Values.host(h, bracketed: false)
          host = .exact(name)
        } catch { throw bad(error.message) }
      }
    }
    var port: Int?
    if rest.hasPrefix(":") {
      let end = rest.firstIndex(of: "/") ?? rest.endIndex
      do {
        port = try Values.port(
          rest[rest.index(after: rest.startIndex)..<end], in: text, allowZero: false)
      } catch { throw bad(error.message) }
      rest = rest[end...]
    }
    var path: String?
    if !rest.isEmpty {
      guard rest.hasPrefix("/") else { throw bad("unexpected \"\(rest)\"") }
      for b in rest.utf8 {
        if b <= 0x20 || b >= 0x7F { throw bad("path prefix needs percent-encoding for non-ASCII") }
        if b == UInt8(ascii: "?") { throw bad("a path prefix cannot hold a query") }
      }
      let segments = rest.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
      for (i, seg) in segments.enumerated() {
        if seg == "." || seg == ".." || (seg.isEmpty && i != segments.count - 1) {
          throw bad("path prefix has an empty, . or .. segment")
        }
      }
      if !PathNormalizer.validPercentEncoding(rest.utf8) {
        throw bad("invalid percent-encoding in the path prefix")
      }
      path = String(decoding: PathNormalizer.normalize(rest.utf8), as: UTF8.self)
    }
    return RoutePattern(host: host, port: port, pathPrefix: path)
  }

  /// A header field name (RFC 9110 token).
  static func isToken<S: StringProtocol>(_ s: S) -> Bool { HeaderNames.isToken(s) }

  /// Headers the proxy owns: framing, hop-by-hop (`Wire.HeaderNames`), the proxy's own
  /// authentication fields and `Host`.
  static let reservedHeaders = Set(
    HeaderNames.hopByHop + HeaderNames.framing
      + ["proxy-authenticate", "proxy-authorization", "host"])

  static func headerName(_ text: String) throws(BadValue) -> String {
    guard isToken(text) else {
      throw BadValue(
        "invalid header name \"\(text)\"; expected a token of letters, digits and -")
    }
    if reservedHeaders.contains(text.lowercased()) {
      throw BadValue(
        "header \(text) cannot carry a credential (the proxy owns it); expected another header name such as Authorization or X-Api-Key"
      )
    }
    return text
  }

  static func email(_ text: String) throws(BadValue) -> String {
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
      !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
      text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
    else {
      throw BadValue(
        "\"\(text)\" is not an email address; expected a service account like name@project.iam.gserviceaccount.com"
      )
    }
    return text
  }

  /// `env:NAME`, `file:PATH`, or a literal.
  static func secret(_ text: String) throws(BadValue) -> SecretRef {
    let lower = text.prefix(5).lowercased()
    if lower.hasPrefix("env:") {
      let name = text.dropFirst(4)
      guard let f = name.utf8.first, !(f >= 0x30 && f <= 0x39),
        name.utf8.allSatisfy({ b in
          (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == 0x5F
        })
      else {
        throw BadValue(
          "invalid environment variable name \"\(name)\"; expected letters, digits and _ (e.g. env:EXAMPLE_TOKEN)"
        )
      }
      return .env(String(name))
    }
    if lower == "file:" {
      let path = text.dropFirst(5)
      if path.isEmpty { throw BadValue("empty path in \"file:\"; expected file:PATH") }
      return .file(String(path))
    }
    if text.isEmpty { throw BadValue("empty secret; expected env:NAME, file:PATH or a value") }
    return .literal(text)
  }
}

/// An absolute `http(s)://` URL, split.
struct URLParts: Sendable {
  var scheme: String
  /// Lowercase, no trailing dot, IPv6 without brackets.
  var host: String
  var isIPv6: Bool
  var port: Int?
  /// Path and query, never empty (`/` at least); no fragment.
  var pathAndQuery: String

  static func parse(_ text: String) throws(BadValue) -> URLParts {
    let usage = "expected an absolute URL like https://api.example.com/v1/x"
    guard let sep = text.range(of: "://") else {
      throw BadValue("\"\(text)\" is not an absolute URL; \(usage)")
    }
    let scheme = text[..<sep.lowerBound].lowercased()
    guard scheme == "http" || scheme == "https" else {
      throw BadValue("unsupported URL scheme \"\(scheme)\"; expected http or https")
    }
    if text.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
      throw BadValue("URL contains spaces or control characters; \(usage)")
    }
    let rest = text[sep.upperBound...]
    let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
    let authority = rest[..<end]
    if authority.contains("@") {
      throw BadValue("user info in URL \"\(text)\" is not supported; \(usage)")
    }
    if authority.isEmpty { throw BadValue("URL \"\(text)\" has no host; \(usage)") }
    let hp = try Values.hostPort(String(authority), portRequired: false, lenientIPv4: true)
    var pq = rest[end...]
    if let hash = pq.firstIndex(of: "#") { pq = pq[..<hash] }
    var pathAndQuery = String(pq)
    if !pathAndQuery.hasPrefix("/") { pathAndQuery = "/" + pathAndQuery }
    return URLParts(
      scheme: scheme, host: hp.host, isIPv6: hp.isIPv6, port: hp.port, pathAndQuery: pathAndQuery)
  }
}
