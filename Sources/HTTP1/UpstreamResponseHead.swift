// Reading an upstream's response head, as curl hands it over one line at a time, and computing the
// framing the caller will see. The upstream's framing headers are read and checked, never copied:
// a caller's keep-alive connection must not depend on what an upstream claims (RFC 9112 §6.3).

import Wire

/// `name` equals `lowercase` ignoring ASCII case (`lowercase` must be lowercase ASCII): the one
/// field-name compare, `Wire.HeaderNames.equal`.
@inline(__always)
public func fieldNameIs(_ name: String, _ lowercase: String) -> Bool {
  HeaderNames.equal(name, lowercase)
}

/// How the body of a final response is delimited towards the caller.
public enum ResponseBodyFraming: Sendable, Equatable {
  /// No body, whatever the headers say (HEAD, 204, 304). `advertised` is the upstream's valid
  /// Content-Length, which a HEAD or 304 may carry as information.
  case none(advertised: UInt64?)
  /// Exactly this many bytes.
  case length(UInt64)
  /// Known only at the end: the upstream sent chunks (curl removes them) or reads until close.
  case unknown
}

/// One upstream response head, fed line by line (`Name: value`, the status line, the blank line).
public struct UpstreamHeadReader: Sendable {
  public enum Step: Sendable, Equatable {
    /// A line was taken; more follow.
    case more
    /// An interim 1xx head (100, 102, 103) ended: it is not forwarded.
    case interim
    /// The final head is complete: read `status`, `headers` and `framing`.
    case complete
    /// Not a response credproxy can frame for the caller (502 `upstream_protocol`).
    case invalid(String)
  }

  public private(set) var status = 0
  /// The fields of the final head in arrival order, framing fields included (callers drop them).
  public private(set) var headers: [HeaderField] = []
  public private(set) var framing = ResponseBodyFraming.unknown
  private let requestMethod: String
  /// The next line is a status line: at the start, and after an interim head.
  private var atHeadStart = true

  public init(requestMethod: String) {
    self.requestMethod = requestMethod
  }

  /// Takes one line, with or without its CRLF.
  public mutating func take(line raw: UnsafeRawBufferPointer) -> Step {
    var end = raw.count
    while end > 0 && (raw[end - 1] == 13 || raw[end - 1] == 10) { end -= 1 }
    if end == 0 { return endOfHead() }
    if atHeadStart {
      atHeadStart = false
      headers.removeAll(keepingCapacity: true)
      status = 0
      // Anything but "HTTP/…" here leaves status 0: invalid when the head ends.
      guard
        end >= 5 && raw[0] == 0x48 && raw[1] == 0x54 && raw[2] == 0x54 && raw[3] == 0x50
          && raw[4] == 0x2F
      else { return .more }
      // "HTTP/x[.y] NNN …": the status is the three digits after the first space.
      var i = 5
      while i < end && raw[i] != 0x20 { i += 1 }
      var code = 0
      var digits = 0
      i += 1
      while i < end && digits < 3 {
        let d = Int(raw[i]) - 48
        guard d >= 0 && d <= 9 else { break }
        code = code * 10 + d
        digits += 1
        i += 1
      }
      let complete = digits == 3 && (i == end || raw[i] == 0x20)
      status = complete ? code : 0
      return .more
    }
    var colon = 0
    while colon < end && raw[colon] != 0x3A { colon += 1 }
    guard colon > 0 && colon < end else { return .more }  // curl already vetted the line
    var valueStart = colon + 1
    while valueStart < end && (raw[valueStart] == 0x20 || raw[valueStart] == 0x09) {
      valueStart += 1
    }
    var valueEnd = end
    while valueEnd > valueStart && (raw[valueEnd - 1] == 0x20 || raw[valueEnd - 1] == 0x09) {
      valueEnd -= 1
    }
    let base = raw.baseAddress!
    headers.append(
      HeaderField(
        name: String(decoding: UnsafeRawBufferPointer(start: base, count: colon), as: UTF8.self),
        value: String(
          decoding: UnsafeRawBufferPointer(start: base + valueStart, count: valueEnd - valueStart),
          as: UTF8.self)))
    return .more
  }

  private mutating func endOfHead() -> Step {
    switch status {
    case 101:
      // We never ask for an upgrade (Upgrade is hop-by-hop and dropped): what follows would be
      // another protocol's bytes on the caller's HTTP connection.
      return .invalid("upstream switched protocols (101) without being asked")
    case 100...199:
      headers.removeAll(keepingCapacity: true)
      status = 0
      atHeadStart = true
      return .interim
    case 200...599:
      switch Self.framing(status: status, requestMethod: requestMethod, headers: headers) {
      case .success(let f):
        framing = f
        return .complete
      case .failure(let why):
        return .invalid(why.message)
      }
    default:
      return .invalid("upstream sent no valid status line")
    }
  }

  public struct FramingError: Error, Sendable, Equatable {
    public let message: String
  }

  /// The caller's framing for a final response. Ambiguous upstream framing is an error: with both
  /// Content-Length and Transfer-Encoding, or two different lengths, two readers of the same bytes
  /// could disagree about where the response ends.
  public static func framing(status: Int, requestMethod: String, headers: [HeaderField])
    -> Result<ResponseBodyFraming, FramingError>
  {
    var length: UInt64? = nil
    var sawTransferEncoding = false
    for h in headers {
      if fieldNameIs(h.name, "transfer-encoding") {
        sawTransferEncoding = true
      } else if fieldNameIs(h.name, "content-length") {
        // A list of equal values (`5, 5`) is one length (RFC 9110 §8.6); anything else is not.
        for item in h.value.utf8.split(separator: 0x2C, omittingEmptySubsequences: false) {
          guard let n = decimal(item) else {
            return .failure(FramingError(message: "upstream sent an invalid Content-Length"))
          }
          if let length, length != n {
            return .failure(FramingError(message: "upstream sent two different Content-Lengths"))
          }
          length = n
        }
      }
    }
    if sawTransferEncoding && length != nil {
      return .failure(
        FramingError(message: "upstream sent both Content-Length and Transfer-Encoding"))
    }
    if requestMethod == "HEAD" || status == 204 || status == 304 {
      return .success(.none(advertised: status == 204 ? nil : length))
    }
    if let length { return .success(.length(length)) }
    return .success(.unknown)
  }

  /// 1*DIGIT with optional surrounding whitespace, at most 19 digits (no overflow).
  private static func decimal(_ s: Substring.UTF8View.SubSequence) -> UInt64? {
    var bytes = s[...]
    while let f = bytes.first, f == 0x20 || f == 0x09 { bytes = bytes.dropFirst() }
    while let l = bytes.last, l == 0x20 || l == 0x09 { bytes = bytes.dropLast() }
    guard !bytes.isEmpty, bytes.count <= 19 else { return nil }
    var n: UInt64 = 0
    for b in bytes {
      guard b >= 0x30 && b <= 0x39 else { return nil }
      n = n * 10 + UInt64(b - 0x30)
    }
    return n
  }
}
