// Request body framing: Content-Length and chunked (RFC 9112 §6-§7), incremental and strict.

public enum BodyDecodeResult: Sendable, Equatable {
  /// `consumed` input bytes were used (all of them); the body continues in the next input.
  case progress(consumed: Int)
  /// The body (and for chunked, the trailer section) ended after `consumed` input bytes; any
  /// bytes after that belong to the next request.
  case done(consumed: Int)
  /// The body is malformed or too large; answer `status` and close the connection.
  case failed(HTTPParseError)
}

public struct BodyDecoder: Sendable {
  /// Longest chunk-size line accepted (size and extensions, without the CRLF).
  static let maxChunkLine = 4096
  /// Trailer section limits (the fields are validated, then dropped).
  static let maxTrailerBytes = 64 * 1024
  static let maxTrailerFields = 128

  private enum State: Sendable, Equatable {
    case fixed(remaining: UInt64)
    // chunk-size [ chunk-ext ] CRLF
    case sizeStart, sizeDigits, beforeSemicolon, extNameStart, extName, afterExtName
    case extValueStart, extToken, extQuoted, extQuotedEscape, afterQuoted, sizeLF
    // chunk-data CRLF
    case data(remaining: UInt64)
    case dataCR, dataLF
    // trailer-section CRLF
    case trailerLineStart, trailerName, trailerValue, trailerLF, finalLF
    case done
    case failed(HTTPParseError)
  }

  public let framing: RequestHead.BodyFraming
  public let maxBody: UInt64
  /// Body bytes passed to `emit` so far (chunk data only, no framing).
  public private(set) var bodyBytesSoFar: UInt64 = 0

  private var state: State
  private var chunkSize: UInt64 = 0
  private var significantDigits = 0
  private var lineBytes = 0
  private var trailerBytes = 0
  private var trailerFields = 0
  // Incremental UTF-8 validation of trailer values: continuation bytes still expected, and the
  // range the next one must fall in.
  private var utf8Pending: UInt8 = 0
  private var utf8Low: UInt8 = 0x80
  private var utf8High: UInt8 = 0xBF

  public init(framing: RequestHead.BodyFraming, maxBody: UInt64) {
    self.framing = framing
    self.maxBody = maxBody
    switch framing {
    case .none:
      state = .done
    case .contentLength(let n):
      if n > maxBody {
        state = .failed(Self.tooLarge(maxBody))
      } else {
        state = n == 0 ? .done : .fixed(remaining: n)
      }
    case .chunked:
      state = .sizeStart
    }
  }

  /// True once the whole body (and for chunked, the trailer section) has been consumed.
  public var isComplete: Bool { state == .done }

  private static func tooLarge(_ maxBody: UInt64) -> HTTPParseError {
    HTTPParseError(status: 413, reason: "request body exceeds \(maxBody) bytes")
  }

  /// Consumes framing bytes from `input` and calls `emit` with the body data in it (slices of
  /// `input`, valid only during the call).
  public mutating func decode(
    _ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) -> Void
  ) -> BodyDecodeResult {
    switch state {
    case .done:
      return .done(consumed: 0)
    case .failed(let error):
      return .failed(error)
    case .fixed(let remaining):
      let n = Int(min(remaining, UInt64(input.count)))
      if n > 0 { emit(UnsafeRawBufferPointer(rebasing: input[0..<n])) }
      bodyBytesSoFar &+= UInt64(n)
      if remaining == UInt64(n) {
        state = .done
        return .done(consumed: n)
      }
      state = .fixed(remaining: remaining &- UInt64(n))
      return .progress(consumed: n)
    default:
      return decodeChunked(input, emit: emit)
    }
  }

  private mutating func fail(_ status: Int, _ reason: String) -> BodyDecodeResult {
    let error = HTTPParseError(status: status, reason: reason)
    state = .failed(error)
    return .failed(error)
  }

  private mutating func decodeChunked(
    _ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) -> Void
  ) -> BodyDecodeResult {
    let end = input.count
    var i = 0
    while i < end {
      if case .data(let remaining) = state {
        let n = Int(min(remaining, UInt64(end &- i)))
        emit(UnsafeRawBufferPointer(rebasing: input[i..<(i &+ n)]))
        bodyBytesSoFar &+= UInt64(n)
        i &+= n
        state = remaining == UInt64(n) ? .dataCR : .data(remaining: remaining &- UInt64(n))
        continue
      }
      let b = input[i]
      i &+= 1
      switch state {
      case .sizeStart, .sizeDigits, .beforeSemicolon, .extNameStart, .extName, .afterExtName,
        .extValueStart, .extToken, .extQuoted, .extQuotedEscape, .afterQuoted:
        if b != ASCII.cr {
          lineBytes &+= 1
          if lineBytes > Self.maxChunkLine { return fail(400, "chunk size line too long") }
        }
        if let error = chunkLineByte(b) { return fail(error.status, error.reason) }
      case .sizeLF:
        guard b == ASCII.lf else { return fail(400, "bare cr in chunk size line") }
        lineBytes = 0
        if chunkSize == 0 {
          state = .trailerLineStart
        } else {
          state = .data(remaining: chunkSize)
        }
        chunkSize = 0
        significantDigits = 0
      case .dataCR:
        guard b == ASCII.cr else { return fail(400, "chunk data not followed by crlf") }
        state = .dataLF
      case .dataLF:
        guard b == ASCII.lf else { return fail(400, "chunk data not followed by crlf") }
        state = .sizeStart
      case .trailerLineStart, .trailerName, .trailerValue, .trailerLF, .finalLF:
        trailerBytes &+= 1
        if trailerBytes > Self.maxTrailerBytes {
          return fail(431, "trailer section exceeds \(Self.maxTrailerBytes) bytes")
        }
        if let error = trailerByte(b) { return fail(error.status, error.reason) }
        if state == .done { return .done(consumed: i) }
      case .fixed, .data, .done, .failed:
        preconditionFailure("unreachable body decoder state")
      }
    }
    return .progress(consumed: i)
  }

  /// One byte of `chunk-size [ chunk-ext ] CR` (RFC 9112 §7.1, §7.1.1).
  private mutating func chunkLineByte(_ b: UInt8) -> HTTPParseError? {
    switch state {
    case .sizeStart, .sizeDigits:
      if let digit = hexValue(b) {
        if chunkSize != 0 || digit != 0 {
          significantDigits &+= 1
          if significantDigits > 16 {
            return HTTPParseError(status: 400, reason: "chunk size overflow")
          }
          chunkSize = chunkSize << 4 | UInt64(digit)
        }
        state = .sizeDigits
        return nil
      }
      guard state == .sizeDigits else {
        return HTTPParseError(status: 400, reason: "invalid chunk size")
      }
      if chunkSize > maxBody &- bodyBytesSoFar { return Self.tooLarge(maxBody) }
      switch b {
      case ASCII.semicolon: state = .extNameStart
      case ASCII.space, ASCII.tab: state = .beforeSemicolon
      case ASCII.cr: state = .sizeLF
      default: return HTTPParseError(status: 400, reason: "invalid chunk size")
      }
    case .beforeSemicolon:
      if b == ASCII.semicolon {
        state = .extNameStart
      } else if !isOWS(b) {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
    case .extNameStart:
      if isTokenChar(b) {
        state = .extName
      } else if !isOWS(b) {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
    case .extName:
      if isTokenChar(b) { return nil }
      return afterExtItem(b, allowEquals: true)
    case .afterExtName:
      if isOWS(b) { return nil }
      if b == ASCII.equals {
        state = .extValueStart
      } else if b == ASCII.semicolon {
        state = .extNameStart
      } else {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
    case .extValueStart:
      if b == ASCII.quote {
        state = .extQuoted
      } else if isTokenChar(b) {
        state = .extToken
      } else if !isOWS(b) {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
    case .extToken:
      if isTokenChar(b) { return nil }
      return afterExtItem(b, allowEquals: false)
    case .extQuoted:
      // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
      if b == ASCII.quote {
        state = .afterQuoted
      } else if b == ASCII.backslash {
        state = .extQuotedEscape
      } else if !(isFieldVChar(b) || b >= 0x80) {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
    case .extQuotedEscape:
      guard isFieldVChar(b) || b >= 0x80 else {
        return HTTPParseError(status: 400, reason: "invalid chunk extension")
      }
      state = .extQuoted
    case .afterQuoted:
      return afterExtItem(b, allowEquals: false)
    default:
      preconditionFailure("not a chunk size line state")
    }
    return nil
  }

  /// The byte after an extension name or value: BWS, `;`, `=` (after a name) or the CR.
  private mutating func afterExtItem(_ b: UInt8, allowEquals: Bool) -> HTTPParseError? {
    switch b {
    case ASCII.semicolon: state = .extNameStart
    case ASCII.cr: state = .sizeLF
    case ASCII.equals where allowEquals: state = .extValueStart
    case ASCII.space, ASCII.tab: state = allowEquals ? .afterExtName : .beforeSemicolon
    default: return HTTPParseError(status: 400, reason: "invalid chunk extension")
    }
    return nil
  }

  /// One byte of the trailer section (RFC 9112 §7.1.2): field lines validated like header
  /// fields, then the final CRLF.
  private mutating func trailerByte(_ b: UInt8) -> HTTPParseError? {
    switch state {
    case .trailerLineStart:
      if b == ASCII.cr {
        state = .finalLF
      } else if isTokenChar(b) {
        trailerFields &+= 1
        if trailerFields > Self.maxTrailerFields {
          return HTTPParseError(
            status: 431, reason: "more than \(Self.maxTrailerFields) trailer fields")
        }
        state = .trailerName
      } else if isOWS(b) {
        return HTTPParseError(status: 400, reason: "obs-fold or whitespace before a trailer field")
      } else if b == ASCII.lf {
        return HTTPParseError(status: 400, reason: "bare lf in trailer section")
      } else {
        return HTTPParseError(status: 400, reason: "invalid character in trailer name")
      }
    case .trailerName:
      if b == ASCII.colon {
        state = .trailerValue
      } else if isOWS(b) {
        return HTTPParseError(status: 400, reason: "whitespace between trailer name and colon")
      } else if !isTokenChar(b) {
        return HTTPParseError(status: 400, reason: "invalid character in trailer name")
      }
    case .trailerValue:
      if utf8Pending > 0 {
        guard b >= utf8Low && b <= utf8High else {
          return HTTPParseError(status: 400, reason: "trailer value is not valid utf-8")
        }
        utf8Pending &-= 1
        utf8Low = 0x80
        utf8High = 0xBF
      } else if b == ASCII.cr {
        state = .trailerLF
      } else if b >= 0x80 {
        switch b {
        case 0xC2...0xDF: utf8Pending = 1
        case 0xE0:
          utf8Pending = 2
          utf8Low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: utf8Pending = 2
        case 0xED:
          utf8Pending = 2
          utf8High = 0x9F
        case 0xF0:
          utf8Pending = 3
          utf8Low = 0x90
        case 0xF1...0xF3: utf8Pending = 3
        case 0xF4:
          utf8Pending = 3
          utf8High = 0x8F
        default:
          return HTTPParseError(status: 400, reason: "trailer value is not valid utf-8")
        }
      } else if !isFieldVChar(b) {
        return HTTPParseError(status: 400, reason: "invalid character in trailer value")
      }
    case .trailerLF:
      guard b == ASCII.lf else {
        return HTTPParseError(status: 400, reason: "bare cr in trailer section")
      }
      state = .trailerLineStart
    case .finalLF:
      guard b == ASCII.lf else {
        return HTTPParseError(status: 400, reason: "bare cr in trailer section")
      }
      state = .done
    default:
      preconditionFailure("not a trailer state")
    }
    return nil
  }
}
