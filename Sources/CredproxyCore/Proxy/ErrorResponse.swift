import HTTP1
import Wire

/// A whole response credproxy makes itself (errors, admin pages): the head with Content-Type and
/// Content-Length, then the body (left out for HEAD).
func madeResponse(
  status: Int, reason: String? = nil, contentType: String, body: String,
  headers extra: [HeaderField] = [], close: Bool, includeBody: Bool = true
) -> [UInt8] {
  let bytes = Array(body.utf8)
  var headers = [
    HeaderField(name: "Content-Type", value: contentType),
    HeaderField(name: "Content-Length", value: String(bytes.count)),
  ]
  headers += extra
  if close { headers.append(HeaderField(name: "Connection", value: "close")) }
  let head = serializeResponseHead(status: status, reason: reason, headers: headers)
  return includeBody ? head + bytes : head
}

/// An error credproxy answers with: short text/plain body, one line a caller can act on, and an
/// `X-Credproxy-Error` code a script can test for.
struct ErrorResponse {
  var code: ErrorCode
  var message: String
  var status: Int { code.status }

  /// `reasonInStatusLine`: for refused CONNECTs, whose clients show only the status line
  /// (`403 tunnel_denied: no intercept or tunnel route for …` instead of `403 Forbidden`).
  func serialized(
    close: Bool, extraHeaders: [HeaderField] = [], reasonInStatusLine: Bool = false
  ) -> [UInt8] {
    madeResponse(
      status: status,
      reason: reasonInStatusLine ? "\(code): \(message.prefix(300))" : nil,
      contentType: "text/plain; charset=utf-8", body: "credproxy: \(message)\n",
      headers: [HeaderField(name: "X-Credproxy-Error", value: code.rawValue)] + extraHeaders,
      close: close)
  }
}
