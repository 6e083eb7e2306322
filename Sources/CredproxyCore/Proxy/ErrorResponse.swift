import HTTP1

/// A response credproxy makes itself: short text/plain body, one line a caller can act on, and an
/// `X-Credproxy-Error` code a script can test for.
struct ErrorResponse {
  var status: Int
  var code: String
  var message: String

  func serialized(close: Bool, extraHeaders: [HeaderField] = []) -> [UInt8] {
    let body = Array("credproxy: \(message)\n".utf8)
    var headers = [
      HeaderField(name: "Content-Type", value: "text/plain; charset=utf-8"),
      HeaderField(name: "Content-Length", value: String(body.count)),
      HeaderField(name: "X-Credproxy-Error", value: code),
    ]
    headers += extraHeaders
    if close { headers.append(HeaderField(name: "Connection", value: "close")) }
    return serializeResponseHead(status: status, headers: headers) + body
  }
}
