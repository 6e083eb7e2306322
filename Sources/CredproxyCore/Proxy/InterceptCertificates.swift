/// Server certificates for intercepted hosts: the local CA's leaves, one TLS context per host
/// (cached, renewed before expiry). Shared by every loop.
protocol InterceptCertificates: AnyObject, Sendable {
  /// The TLS context to terminate a caller's TLS for `host` with, or why there is none.
  func serverContext(forHost host: String) -> Result<TLSServerContext, InterceptCertificateError>
}

struct InterceptCertificateError: Error, CustomStringConvertible {
  var message: String
  var description: String { message }
}
