// Writing response heads and chunked framing back to the client.

/// `"HTTP/1.1 <status> <reason>\r\n"`, one `"Name: value\r\n"` per field in order, then `"\r\n"`.
/// `reason` defaults to `reasonPhrase(status)`. CR, LF and NUL in the reason, names or values are
/// written as SP, so no field can split the head.
public func serializeResponseHead(
  status: Int, reason: String? = nil, headers: [HeaderField]
) -> [UInt8] {
  let reason = reason ?? reasonPhrase(status)
  let statusText = String(status)
  var size = 9 + statusText.utf8.count + 1 + reason.utf8.count + 4
  for field in headers { size &+= field.name.utf8.count &+ field.value.utf8.count &+ 4 }
  // One allocation of the exact size, filled through a pointer: appending byte by byte to an
  // array (a capacity check each) showed in profiles, this runs for every response.
  return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
    var w = HeadWriter(base: buffer.baseAddress!)
    w.put("HTTP/1.1 ")
    w.put(statusText)
    w.put(ASCII.space)
    w.put(reason)
    w.put(ASCII.cr)
    w.put(ASCII.lf)
    for field in headers {
      w.put(field.name)
      w.put(ASCII.colon)
      w.put(ASCII.space)
      w.put(field.value)
      w.put(ASCII.cr)
      w.put(ASCII.lf)
    }
    w.put(ASCII.cr)
    w.put(ASCII.lf)
    precondition(w.written == size, "response head size miscounted")
    count = w.written
  }
}

/// Writes a head into memory sized for it beforehand; CR, LF and NUL are written as SP.
private struct HeadWriter {
  let base: UnsafeMutablePointer<UInt8>
  var written = 0

  @inline(__always)
  mutating func put(_ b: UInt8) {
    base[written] = b
    written &+= 1
  }

  @inline(__always)
  mutating func put(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
      for b in bytes { put(b == ASCII.cr || b == ASCII.lf || b == 0 ? ASCII.space : b) }
    }
  }
}

/// The RFC 9110 §15 reason phrase for `status`; empty for codes it does not define.
public func reasonPhrase(_ status: Int) -> String {
  switch status {
  case 100: return "Continue"
  case 101: return "Switching Protocols"
  case 200: return "OK"
  case 201: return "Created"
  case 202: return "Accepted"
  case 203: return "Non-Authoritative Information"
  case 204: return "No Content"
  case 205: return "Reset Content"
  case 206: return "Partial Content"
  case 300: return "Multiple Choices"
  case 301: return "Moved Permanently"
  case 302: return "Found"
  case 303: return "See Other"
  case 304: return "Not Modified"
  case 305: return "Use Proxy"
  case 307: return "Temporary Redirect"
  case 308: return "Permanent Redirect"
  case 400: return "Bad Request"
  case 401: return "Unauthorized"
  case 402: return "Payment Required"
  case 403: return "Forbidden"
  case 404: return "Not Found"
  case 405: return "Method Not Allowed"
  case 406: return "Not Acceptable"
  case 407: return "Proxy Authentication Required"
  case 408: return "Request Timeout"
  case 409: return "Conflict"
  case 410: return "Gone"
  case 411: return "Length Required"
  case 412: return "Precondition Failed"
  case 413: return "Content Too Large"
  case 414: return "URI Too Long"
  case 415: return "Unsupported Media Type"
  case 416: return "Range Not Satisfiable"
  case 417: return "Expectation Failed"
  case 421: return "Misdirected Request"
  case 422: return "Unprocessable Content"
  case 426: return "Upgrade Required"
  case 428: return "Precondition Required"  // RFC 6585
  case 429: return "Too Many Requests"  // RFC 6585
  case 431: return "Request Header Fields Too Large"  // RFC 6585
  case 500: return "Internal Server Error"
  case 501: return "Not Implemented"
  case 502: return "Bad Gateway"
  case 503: return "Service Unavailable"
  case 504: return "Gateway Timeout"
  case 505: return "HTTP Version Not Supported"
  case 511: return "Network Authentication Required"  // RFC 6585
  default: return ""
  }
}

/// The chunk-size line for a chunk of `count` bytes: lowercase hex, then CRLF.
/// A chunk of zero bytes would be the last chunk and end the body, so for `count <= 0` this
/// returns no bytes at all: callers must not write a chunk (or its CRLF) for empty data.
public func chunkHeader(_ count: Int) -> [UInt8] {
  guard count > 0 else { return [] }
  var out: [UInt8] = []
  out.reserveCapacity(18)
  var shift = (Int.bitWidth - count.leadingZeroBitCount - 1) / 4 * 4
  while shift >= 0 {
    let digit = UInt8((count >> shift) & 0xF)
    out.append(digit < 10 ? ASCII.zero &+ digit : 0x61 &+ digit &- 10)
    shift -= 4
  }
  out.append(ASCII.cr)
  out.append(ASCII.lf)
  return out
}

/// The last chunk and the empty trailer section: `"0\r\n\r\n"`.
public let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
