import CSystem
import CredproxyConfig
import Glibc

/// Accepts connections on one listening socket and hands them to its loop.
final class Listener: EventHandler {
  let fd: Int32
  /// Set for `listen … tls CERT KEY`: connections speak TLS to us (HTTPS proxy).
  let tls: TLSServerContext?
  unowned let context: LoopContext

  init(fd: Int32, tls: TLSServerContext?, context: LoopContext) {
    self.fd = fd
    self.tls = tls
    self.context = context
  }

  func start() {
    context.loop.register(fd, events: EPOLLIN.rawValue, handler: self)
  }

  func stop() {
    context.loop.unregister(fd)
    close(fd)
  }

  func handleEvents(fd: Int32, events: UInt32) {
    // Accept a bounded batch per wake-up so one busy listener cannot starve established clients.
    for _ in 0..<64 {
      var storage = sockaddr_storage()
      var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
      let client = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
        }
      }
      if client < 0 {
        if errno == EINTR || errno == ECONNABORTED { continue }
        if errno == EMFILE || errno == ENFILE {
          Log.info("accept: out of file descriptors; raise the limit (ulimit -n)")
        }
        return
      }
      var one: Int32 = 1
      setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
      let peer =
        withUnsafeBytes(of: &storage) { DialCheck.ipAddress($0.baseAddress!, length: $0.count) }
        ?? IPAddress(ipv4: 0)
      context.accept(client, address: Socket.describe(storage), peer: peer, tls: tls)
    }
  }
}
