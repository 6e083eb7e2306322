import CSystem
import Glibc

/// Accepts connections on one listening socket and hands each to `onAccept`, on the loop's thread.
/// Used by the proxy listeners and the admin listener alike.
final class Listener: EventHandler {
  let fd: Int32
  unowned let loop: EventLoop
  private let onAccept: (Int32, sockaddr_storage) -> Void

  init(fd: Int32, loop: EventLoop, onAccept: @escaping (Int32, sockaddr_storage) -> Void) {
    self.fd = fd
    self.loop = loop
    self.onAccept = onAccept
  }

  func start() {
    loop.register(fd, events: EPOLLIN.rawValue, handler: self)
  }

  func stop() {
    loop.unregister(fd)
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
      onAccept(client, storage)
    }
  }
}
