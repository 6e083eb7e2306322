import CCrypto
import Glibc
import Synchronization
import Wire

/// The outcome of one non-blocking read or write on a client connection.
enum IOResult {
  case bytes(Int)
  /// Nothing more now; wait for the socket to be readable (or writable, when TLS needs to send
  /// while reading, or receive while writing).
  case wouldBlock(wantsWrite: Bool)
  case closed
  case failed
}

/// The certificate and key of a `listen … tls CERT KEY` listener. One SSL_CTX, shared by every
/// loop: OpenSSL allows SSL_new on a configured, never-modified context from any thread, which is
/// what makes `@unchecked Sendable` sound.
final class TLSServerContext: @unchecked Sendable {
  let ctx: OpaquePointer

  /// Takes ownership of a configured context (an intercepted host's leaf, from the local CA).
  init(owning ctx: OpaquePointer) {
    self.ctx = ctx
  }

  init(certFile: String, keyFile: String) throws(SocketError) {
    guard let ctx = SSL_CTX_new(TLS_server_method()) else {
      throw SocketError("TLS: cannot create a context", errno: EINVAL)
    }
    self.ctx = ctx
    cp_ssl_ctx_set_min_tls12(ctx)
    // Our output buffer moves as it compacts; writes may complete partially.
    cp_ssl_ctx_set_mode(
      ctx, CP_SSL_MODE_PARTIAL_WRITE | CP_SSL_MODE_MOVING_BUFFER | CP_SSL_MODE_RELEASE_BUFFERS)
    guard SSL_CTX_use_certificate_chain_file(ctx, certFile) == 1 else {
      throw SocketError(
        "TLS: cannot load certificate chain \(certFile): \(Self.lastError())", errno: EINVAL)
    }
    guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
      throw SocketError(
        "TLS: cannot load private key \(keyFile): \(Self.lastError())", errno: EINVAL)
    }
    guard SSL_CTX_check_private_key(ctx) == 1 else {
      throw SocketError("TLS: \(keyFile) does not match \(certFile)", errno: EINVAL)
    }
  }

  deinit { SSL_CTX_free(ctx) }

  static func lastError() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "unknown error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return cString(buf)
  }
}

/// A `listen … tls` listener's current context. A reload puts a new one in (certificates renewed
/// at the same paths, or new paths); connections accepted after that use it, open ones keep theirs.
final class ListenerTLSSlot: Sendable {
  private let current: Mutex<TLSServerContext>

  init(_ context: TLSServerContext) { current = Mutex(context) }

  var context: TLSServerContext { current.withLock { $0 } }

  func replace(with context: TLSServerContext) { current.withLock { $0 = context } }
}

/// A client socket, plain or TLS. The connection reads and writes through it without caring which.
final class ClientTransport {
  let fd: Int32
  private var ssl: OpaquePointer?
  /// The host an intercepted connection's SNI must name (the SSL's app data points here).
  private var expectedServerName: UnsafeMutablePointer<CChar>?
  /// Keeps an intercepted host's context alive as long as the SSL made from it.
  private var interceptContext: TLSServerContext?
  /// When the TLS handshake began (the accept, or the switch after an intercepted CONNECT's
  /// `200`): it must finish within `header-timeout`, like a request head.
  private(set) var handshakeStartedMs: Int64 = 0

  init(fd: Int32, tls: TLSServerContext?) {
    self.fd = fd
    if let tls, let ssl = SSL_new(tls.ctx) {
      SSL_set_fd(ssl, fd)
      SSL_set_accept_state(ssl)
      self.ssl = ssl
      handshakeStartedMs = EventLoop.nowMs()
    }
  }

  deinit {
    if let ssl { SSL_free(ssl) }
    free(expectedServerName)
  }

  /// After `CONNECT` on an intercept route and its `200`, the rest of the connection is TLS that
  /// credproxy terminates with `context` (the target's leaf). The handshake runs inside the next
  /// reads and writes; an SNI other than `serverName` fails it.
  func startTLS(_ context: TLSServerContext, serverName: String) -> Bool {
    guard ssl == nil, let ssl = SSL_new(context.ctx) else { return false }
    guard SSL_set_fd(ssl, fd) == 1 else {
      SSL_free(ssl)
      return false
    }
    expectedServerName = strdup(serverName)
    cp_ssl_set_app_data(ssl, expectedServerName)
    SSL_set_accept_state(ssl)
    self.ssl = ssl
    interceptContext = context
    handshakeStartedMs = EventLoop.nowMs()
    return true
  }

  var isTLS: Bool { ssl != nil }

  /// TLS whose handshake has not finished yet.
  var isHandshaking: Bool {
    guard let ssl else { return false }
    return SSL_is_init_finished(ssl) == 0
  }

  /// The servername callback of intercepted hosts' contexts: the SNI, read as the router reads a
  /// host (`CanonicalHost`: case, trailing dots), must be the CONNECT target the connection set
  /// as the SSL's app data, else the handshake fails with `unrecognized_name`. No SNI is allowed
  /// (IP literals have none); every inner request's authority is bound to the target anyway.
  static let sniNamesTarget: cp_servername_cb = { ssl, alert, _ in
    guard let ssl else { return CP_SSL_TLSEXT_ERR_ALERT_FATAL }
    guard let sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
      return CP_SSL_TLSEXT_ERR_NOACK
    }
    guard let expected = cp_ssl_get_app_data(ssl),
      CanonicalHost(String(cString: sni)).text
        == String(cString: expected.assumingMemoryBound(to: CChar.self))
    else {
      alert?.pointee = CP_SSL_AD_UNRECOGNIZED_NAME
      return CP_SSL_TLSEXT_ERR_ALERT_FATAL
    }
    return CP_SSL_TLSEXT_ERR_OK
  }

  /// Decrypted bytes OpenSSL holds that the socket will not signal again.
  var hasBufferedInput: Bool {
    guard let ssl else { return false }
    return SSL_pending(ssl) > 0
  }

  func read(into buffer: ByteBuffer, max: Int) -> IOResult {
    var result = IOResult.failed
    _ = buffer.fill(max: max) { dest, room in
      if let ssl {
        let n = SSL_read(ssl, dest, Int32(room))
        result = n > 0 ? .bytes(Int(n)) : classify(ssl, n)
        return Int(Swift.max(n, 0))
      }
      let n = Glibc.read(fd, dest, room)
      result = plain(n, closedOnZero: true)
      return Swift.max(n, 0)
    }
    return result
  }

  func write(from buffer: ByteBuffer) -> IOResult {
    var result = IOResult.bytes(0)
    _ = buffer.drain { src, count in
      if let ssl {
        let n = SSL_write(ssl, src, Int32(min(count, Int(Int32.max))))
        result = n > 0 ? .bytes(Int(n)) : classify(ssl, n)
        return Int(Swift.max(n, 0))
      }
      let n = Glibc.write(fd, src, count)
      result = plain(n, closedOnZero: false)
      return Swift.max(n, 0)
    }
    return result
  }

  func close() {
    if let ssl {
      SSL_free(ssl)
      self.ssl = nil
    }
    Glibc.close(fd)
  }

  private func plain(_ n: Int, closedOnZero: Bool) -> IOResult {
    if n > 0 { return .bytes(n) }
    if n == 0 { return closedOnZero ? .closed : .bytes(0) }
    switch errno {
    case EAGAIN, EWOULDBLOCK, EINTR: return .wouldBlock(wantsWrite: false)
    default: return .failed
    }
  }

  private func classify(_ ssl: OpaquePointer, _ n: Int32) -> IOResult {
    switch SSL_get_error(ssl, n) {
    case SSL_ERROR_WANT_READ: return .wouldBlock(wantsWrite: false)
    case SSL_ERROR_WANT_WRITE: return .wouldBlock(wantsWrite: true)
    case SSL_ERROR_ZERO_RETURN: return .closed
    case SSL_ERROR_SYSCALL where n == 0: return .closed
    default:
      ERR_clear_error()
      return .failed
    }
  }
}
