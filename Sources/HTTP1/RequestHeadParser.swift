// The strict, incremental parser of an inbound request head (RFC 9112 §2-§7, RFC 9110).
//
// Two stages. `scan` walks each byte once, however the input is split across calls: it finds the
// line ends, refuses bare CR / bare LF, and enforces the size limits while the head is still
// incomplete. Once the empty line that ends the head is in, `buildHead` parses the request line
// and the field lines in one pass and applies the semantic rules (framing, Host, Connection,
// Expect). The outcome depends only on the bytes, never on how they were split.

public enum HeadParseResult: Sendable, Equatable {
  /// The head is not complete yet: call `parse` again with more bytes.
  case needMore
  /// The head is complete; `consumed` bytes (including skipped leading empty lines and the final
  /// empty line) belong to it. The body or the next request starts at `consumed`.
  case complete(RequestHead, consumed: Int)
  /// The request is refused; answer `status` and close the connection.
  case failed(HTTPParseError)
}

public struct RequestHeadParser: Sendable {
  /// At most this many empty lines (CRLF) before the request line are skipped (RFC 9112 §2.2).
  static let maxLeadingEmptyLines = 4

  public let limits: HTTPLimits

  private enum Phase: Sendable { case leading, requestLine, fields }
  private var phase: Phase = .leading
  /// The next byte to examine: everything before it has been scanned.
  private var offset = 0
  private var lineStart = 0
  private var requestLineStart = 0
  private var requestLineEnd = 0
  private var emptyLines = 0
  private var fieldLines = 0
  /// Set once the head is complete or refused; later calls return it until `reset`.
  private var finished: HeadParseResult? = nil

  public init(limits: HTTPLimits = HTTPLimits()) {
    self.limits = limits
  }

  /// Forgets the current request; call before parsing the next request on the connection.
  public mutating func reset() {
    self = RequestHeadParser(limits: limits)
  }

  /// `bytes` = everything buffered for the current request so far, starting at its first byte.
  /// Call again with the longer buffer as more bytes arrive; bytes already scanned are not
  /// scanned again.
  public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> HeadParseResult {
    if let finished { return finished }
    if bytes.count < offset {
      // Not the growing buffer this parser was fed before: start over.
      reset()
    }
    let result = bytes.withMemoryRebound(to: UInt8.self) { scan($0) }
    if case .needMore = result {} else { finished = result }
    return result
  }

  private mutating func scan(_ p: UnsafeBufferPointer<UInt8>) -> HeadParseResult {
    let end = p.count
    var i = offset
    while i < end {
      if phase == .leading {
        let b = p[i]
        if b == ASCII.cr {
          guard i &+ 1 < end else { break }
          guard p[i &+ 1] == ASCII.lf else { return failure(400, "bare cr in request head") }
          emptyLines &+= 1
          guard emptyLines <= Self.maxLeadingEmptyLines else {
            return failure(400, "too many empty lines before the request line")
          }
          i &+= 2
          continue
        }
        if b == ASCII.lf { return failure(400, "bare lf in request head") }
        phase = .requestLine
        requestLineStart = i
        lineStart = i
      }
      let headLimit = saturatingAdd(requestLineStart, limits.maxHeaderBytes)
      let lineLimit =
        phase == .requestLine ? saturatingAdd(requestLineStart, limits.maxRequestLine) : Int.max
      let stop = min(end, headLimit, lineLimit)
      // Eight bytes at a time while none of them is CR or LF, then byte by byte.
      if let base = p.baseAddress {
        let raw = UnsafeRawPointer(base)
        while i &+ 8 <= stop {
          let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
          if containsByte(word, ASCII.cr) || containsByte(word, ASCII.lf) { break }
          i &+= 8
        }
      }
      while i < stop {
        let b = p[i]
        if b == ASCII.cr || b == ASCII.lf { break }
        i &+= 1
      }
      if i == end { break }
      let b = p[i]
      if b != ASCII.cr && b != ASCII.lf {
        // Stopped at a limit, in the middle of a line.
        if i >= lineLimit {
          return failure(414, "request line exceeds \(limits.maxRequestLine) bytes")
        }
        return headerTooLarge()
      }
      if i >= headLimit { return headerTooLarge() }
      if b == ASCII.lf { return failure(400, "bare lf in request head") }
      guard i &+ 1 < end else { break }
      if i &+ 1 >= headLimit { return headerTooLarge() }
      guard p[i &+ 1] == ASCII.lf else { return failure(400, "bare cr in request head") }
      let lineEnd = i
      i &+= 2
      if phase == .requestLine {
        requestLineEnd = lineEnd
        phase = .fields
      } else if lineEnd == lineStart {
        return buildHead(p, headEnd: i)
      } else {
        fieldLines &+= 1
        if fieldLines > limits.maxHeaderCount {
          return failure(431, "more than \(limits.maxHeaderCount) header fields")
        }
      }
      lineStart = i
    }
    offset = i
    return .needMore
  }

  private func headerTooLarge() -> HeadParseResult {
    failure(431, "request head exceeds \(limits.maxHeaderBytes) bytes")
  }

  // MARK: - The complete head

  private func buildHead(_ p: UnsafeBufferPointer<UInt8>, headEnd: Int) -> HeadParseResult {
    // Request line: method SP request-target SP HTTP-version.
    let lineEnd = requestLineEnd
    var i = requestLineStart
    while i < lineEnd && isTokenChar(p[i]) { i &+= 1 }
    guard i > requestLineStart, i < lineEnd, p[i] == ASCII.space else {
      return failure(400, "invalid method")
    }
    let methodRange = requestLineStart..<i
    i &+= 1
    let targetStart = i
    while i < lineEnd && p[i] != ASCII.space { i &+= 1 }
    guard i > targetStart, i < lineEnd else { return failure(400, "malformed request line") }
    let targetRange = targetStart..<i
    let versionStart = i &+ 1

    let version: RequestHead.Version
    switch parseVersion(p, versionStart..<lineEnd) {
    case .some(.some(let v)): version = v
    case .some(.none): return failure(505, "http version not supported")
    case .none: return failure(400, "invalid http version")
    }

    let isConnect = p.equalsCaseSensitive(methodRange, "CONNECT")
    let target: RequestHead.Target
    switch parseTarget(
      p, targetRange, isConnect: isConnect,
      isOptions: p.equalsCaseSensitive(methodRange, "OPTIONS"))
    {
    case .success(let t): target = t
    case .failure(let error): return .failed(error)
    }

    // Field lines.
    var headers: [HeaderField] = []
    headers.reserveCapacity(fieldLines)
    var host: Authority? = nil
    var hostCount = 0
    var contentLength: UInt64? = nil
    var transferEncodingCount = 0
    var chunked = false
    var connectionClose = false
    var connectionKeepAlive = false
    var expectContinue = false
    var unsupportedExpectation = false

    var line = requestLineEnd &+ 2
    let fieldsEnd = headEnd &- 2
    while line < fieldsEnd {
      // The scan guarantees a CRLF ends every line, so the loops below stop at the CR at the
      // latest (CR is neither a tchar, OWS nor a field-vchar).
      if isOWS(p[line]) { return failure(400, "obs-fold or whitespace before a header field") }
      var c = line
      while isTokenChar(p[c]) { c &+= 1 }
      if p[c] != ASCII.colon {
        if p[c] == ASCII.cr { return failure(400, "header field without colon") }
        var w = c
        while isOWS(p[w]) { w &+= 1 }
        if w > c && p[w] == ASCII.colon {
          return failure(400, "whitespace between header name and colon")
        }
        return failure(400, "invalid character in header name")
      }
      if c == line { return failure(400, "empty header name") }
      let nameRange = line..<c
      var e = c &+ 1
      var nonASCII = false
      while true {
        let b = p[e]
        if isFieldVChar(b) {
          e &+= 1
        } else if b >= 0x80 {
          nonASCII = true
          e &+= 1
        } else if b == ASCII.cr {
          break
        } else {
          return failure(400, "invalid character in header value")
        }
      }
      defer { line = e &+ 2 }
      let valueRange = p.trimmingOWS((c &+ 1)..<e)
      let value: String
      if nonASCII {
        guard
          let v = String(validating: UnsafeBufferPointer(rebasing: p[valueRange]), as: UTF8.self)
        else { return failure(400, "header value is not valid utf-8") }
        value = v
      } else {
        value = p.string(valueRange)
      }

      switch nameRange.count {
      case 4 where p.equalsIgnoringCase(nameRange, "host"):
        hostCount &+= 1
        guard hostCount == 1 else { return failure(400, "multiple host headers") }
        guard let parsed = parseAuthority(p, valueRange) else {
          return failure(400, "invalid host header")
        }
        host = parsed
      case 14 where p.equalsIgnoringCase(nameRange, "content-length"):
        guard contentLength == nil else { return failure(400, "multiple content-length headers") }
        guard let n = parseContentLength(p, valueRange) else {
          return failure(400, "invalid content-length")
        }
        contentLength = n
      case 17 where p.equalsIgnoringCase(nameRange, "transfer-encoding"):
        transferEncodingCount &+= 1
        guard transferEncodingCount == 1 else {
          return failure(400, "multiple transfer-encoding headers")
        }
        chunked = p.equalsIgnoringCase(valueRange, "chunked")
      case 10 where p.equalsIgnoringCase(nameRange, "connection"):
        scanConnection(p, valueRange, close: &connectionClose, keepAlive: &connectionKeepAlive)
      case 6 where p.equalsIgnoringCase(nameRange, "expect"):
        if p.equalsIgnoringCase(valueRange, "100-continue") {
          expectContinue = true
        } else {
          unsupportedExpectation = true
        }
      default:
        break
      }
      headers.append(HeaderField(name: p.string(nameRange), value: value))
    }

    // Semantics: the 400s first, then what is well-formed but unsupported.
    let hasTransferEncoding = transferEncodingCount > 0
    if hasTransferEncoding && contentLength != nil {
      return failure(400, "content-length and transfer-encoding together")
    }
    if hasTransferEncoding && version == .http10 {
      return failure(400, "transfer-encoding in an http/1.0 request")
    }
    let authority: Authority?
    switch target {
    case .absolute(_, let a, _), .authority(let a):
      authority = a
    case .origin, .asterisk:
      if host == nil && version == .http11 { return failure(400, "missing host header") }
      authority = host
    }
    if isConnect && (hasTransferEncoding || (contentLength ?? 0) != 0) {
      return failure(400, "connect request with a body")
    }
    if hasTransferEncoding && !chunked { return failure(501, "unsupported transfer-encoding") }
    if unsupportedExpectation { return failure(417, "unsupported expectation") }

    let framing: RequestHead.BodyFraming
    if isConnect {
      framing = .none
    } else if chunked {
      framing = .chunked
    } else if let contentLength {
      framing = .contentLength(contentLength)
    } else {
      framing = .none
    }
    let keepAlive =
      version == .http11 ? !connectionClose : (connectionKeepAlive && !connectionClose)
    let head = RequestHead(
      method: p.string(methodRange), target: target, version: version, headers: headers,
      framing: framing, keepAlive: keepAlive,
      // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
      expectContinue: expectContinue && version == .http11, authority: authority)
    return .complete(head, consumed: headEnd)
  }
}

// MARK: - Pieces of the head

@inline(__always)
private func failure(_ status: Int, _ reason: String) -> HeadParseResult {
  .failed(HTTPParseError(status: status, reason: reason))
}

@inline(__always)
private func saturatingAdd(_ a: Int, _ b: Int) -> Int {
  let (sum, overflow) = a.addingReportingOverflow(b)
  return overflow ? Int.max : sum
}

/// True when one of the eight bytes of `word` is `byte` (the classic has-zero-byte test).
@inline(__always)
private func containsByte(_ word: UInt64, _ byte: UInt8) -> Bool {
  let x = word ^ (0x0101_0101_0101_0101 &* UInt64(byte))
  return (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080 != 0
}

/// nil: not `HTTP/d.d` (400). `.some(nil)`: well-formed but neither 1.1 nor 1.0 (505).
private func parseVersion(
  _ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>
) -> RequestHead.Version?? {
  guard range.count == 8 else { return nil }
  let v = range.lowerBound
  guard p.equalsCaseSensitive(v..<(v &+ 5), "HTTP/"), isDigit(p[v &+ 5]), p[v &+ 6] == ASCII.dot,
    isDigit(p[v &+ 7])
  else { return nil }
  let major = p[v &+ 5]
  let minor = p[v &+ 7]
  if major == 0x31 && minor == 0x31 { return .some(.http11) }
  if major == 0x31 && minor == 0x30 { return .some(.http10) }
  return .some(nil)
}

/// 1*DIGIT, leading zeros allowed, no sign, no list, no overflow.
private func parseContentLength(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> UInt64? {
  guard !range.isEmpty else { return nil }
  var value: UInt64 = 0
  for j in range {
    let b = p[j]
    guard isDigit(b) else { return nil }
    let (times10, o1) = value.multipliedReportingOverflow(by: 10)
    let (sum, o2) = times10.addingReportingOverflow(UInt64(b &- ASCII.zero))
    guard !o1 && !o2 else { return nil }
    value = sum
  }
  return value
}

/// `Connection` is a comma-separated list of case-insensitive tokens; only `close` and
/// `keep-alive` matter here.
private func scanConnection(
  _ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, close: inout Bool, keepAlive: inout Bool
) {
  var start = range.lowerBound
  while start <= range.upperBound {
    var e = start
    while e < range.upperBound && p[e] != ASCII.comma { e &+= 1 }
    let token = p.trimmingOWS(start..<e)
    if p.equalsIgnoringCase(token, "close") {
      close = true
    } else if p.equalsIgnoringCase(token, "keep-alive") {
      keepAlive = true
    }
    start = e &+ 1
  }
}

// MARK: - The request-target (RFC 9112 §3.2)

private func targetError(_ reason: String) -> Result<RequestHead.Target, HTTPParseError> {
  .failure(HTTPParseError(status: 400, reason: reason))
}

private func parseTarget(
  _ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, isConnect: Bool, isOptions: Bool
) -> Result<RequestHead.Target, HTTPParseError> {
  let first = p[range.lowerBound]
  if isConnect {
    guard let authority = parseAuthority(p, range), authority.port != nil else {
      return targetError("connect requires an authority-form target with a port")
    }
    return .success(.authority(authority))
  }
  if first == ASCII.slash {
    var highBytes = false
    if let error = validatePathAndQuery(p, range, highBytes: &highBytes) {
      return .failure(error)
    }
    return .success(.origin(pathAndQuery: targetString(p, range, encodeHigh: highBytes)))
  }
  if range.count == 1 && first == 0x2A {
    guard isOptions else { return targetError("asterisk-form target is only allowed for options") }
    return .success(.asterisk)
  }
  let scheme: String
  var i = range.lowerBound
  if p.hasPrefixIgnoringCase(range, "http://") {
    scheme = "http"
    i &+= 7
  } else if p.hasPrefixIgnoringCase(range, "https://") {
    scheme = "https"
    i &+= 8
  } else {
    return targetError("invalid request target")
  }
  let authorityStart = i
  while i < range.upperBound {
    let b = p[i]
    if b == ASCII.slash || b == ASCII.question || b == ASCII.hash { break }
    if b == ASCII.at { return targetError("userinfo in request target") }
    i &+= 1
  }
  guard let authority = parseAuthority(p, authorityStart..<i) else {
    return targetError("invalid authority in request target")
  }
  let rest = i..<range.upperBound
  var highBytes = false
  if let error = validatePathAndQuery(p, rest, highBytes: &highBytes) { return .failure(error) }
  let pathAndQuery: String
  if rest.isEmpty {
    pathAndQuery = "/"
  } else if p[rest.lowerBound] == ASCII.question {
    pathAndQuery = "/" + targetString(p, rest, encodeHigh: highBytes)
  } else {
    pathAndQuery = targetString(p, rest, encodeHigh: highBytes)
  }
  return .success(.absolute(scheme: scheme, authority: authority, pathAndQuery: pathAndQuery))
}

/// Path and query: RFC 3986 characters, `%` followed by two hex digits, no fragment, and no
/// dot-segment in the path. Raw bytes >= 0x80 are accepted too (curl sends `http://h/café` as
/// raw UTF-8; nginx and squid take it), and `highBytes` says whether there were any: the target
/// then carries them percent-encoded (`targetString`).
private func validatePathAndQuery(
  _ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, highBytes: inout Bool
) -> HTTPParseError? {
  var i = range.lowerBound
  let end = range.upperBound
  var queryStart = end
  while i < end {
    let b = p[i]
    if b == ASCII.percent {
      guard end &- i >= 3, hexValue(p[i &+ 1]) != nil, hexValue(p[i &+ 2]) != nil else {
        return HTTPParseError(status: 400, reason: "invalid percent-encoding in request target")
      }
      i &+= 3
      continue
    }
    if b >= 0x80 {
      highBytes = true
      i &+= 1
      continue
    }
    guard isTargetChar(b) else {
      if b == ASCII.hash {
        return HTTPParseError(status: 400, reason: "fragment in request target")
      }
      return HTTPParseError(status: 400, reason: "invalid character in request target")
    }
    if b == ASCII.question && queryStart == end { queryStart = i }
    i &+= 1
  }
  if hasDotSegment(p, range.lowerBound..<queryStart) {
    return HTTPParseError(status: 400, reason: "path contains dot-segments")
  }
  return nil
}

/// The target text, with each byte >= 0x80 as `%XX` (uppercase hex) when `encodeHigh`.
private func targetString(
  _ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, encodeHigh: Bool
) -> String {
  guard encodeHigh else { return p.string(range) }
  var out: [UInt8] = []
  out.reserveCapacity(range.count &* 3)
  let digits: StaticString = "0123456789ABCDEF"
  for j in range {
    let b = p[j]
    if b >= 0x80 {
      out.append(ASCII.percent)
      out.append(digits.utf8Start[Int(b >> 4)])
      out.append(digits.utf8Start[Int(b & 0x0F)])
    } else {
      out.append(b)
    }
  }
  return String(decoding: out, as: UTF8.self)
}

/// True when a segment of the path is `.` or `..`, literally or percent-encoded (`%2e`).
/// Encoded `/` and `\` (`%2F`, `%5C`) also end a segment here, since some upstreams decode them
/// before normalising: `/a/..%2Fb` is refused too. Percent-encodings must already be valid.
private func hasDotSegment(_ p: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
  var dots = 0
  var other = false
  var i = range.lowerBound
  let end = range.upperBound
  while i < end {
    let b = p[i]
    var separator = false
    if b == ASCII.percent {
      let decoded = hexValue(p[i &+ 1])! << 4 | hexValue(p[i &+ 2])!
      if decoded == ASCII.slash || decoded == ASCII.backslash {
        separator = true
      } else if decoded == ASCII.dot {
        dots &+= 1
      } else {
        other = true
      }
      i &+= 3
    } else {
      if b == ASCII.slash {
        separator = true
      } else if b == ASCII.dot {
        dots &+= 1
      } else {
        other = true
      }
      i &+= 1
    }
    if separator {
      if !other && (dots == 1 || dots == 2) { return true }
      dots = 0
      other = false
    }
  }
  return !other && (dots == 1 || dots == 2)
}
