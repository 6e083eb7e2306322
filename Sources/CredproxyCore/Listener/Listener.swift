import CSystem
import Glibc
import Synchronization

/// Accepts connections on one listening socket and hands each to `onAccept`, on the loop's thread.
/// Used by the proxy listeners and the admin listener alike.
///
/// Out of file descriptors (EMFILE/ENFILE) the waiting connection stays in the kernel's backlog
/// and the socket stays readable: accepting again at once would spin. The listener instead leaves
/// the epoll set and comes back on a later tick (`pauseMs`); the condition is logged at most once
/// per `FDExhaustion.logIntervalMs` for the whole process, with a count.
final class Listener: EventHandler {
  let fd: Int32
  unowned let loop: EventLoop
  private let onAccept: (Int32, sockaddr_storage) -> Void
  /// Monotonic ms when accepting resumes; nil while accepting.
  private var pausedUntilMs: Int64?
  private var stopped = false
  /// How long accepting pauses after EMFILE/ENFILE (rounded up to the 250 ms tick).
  static let pauseMs: Int64 = 500

  init(fd: Int32, loop: EventLoop, onAccept: @escaping (Int32, sockaddr_storage) -> Void) {
    self.fd = fd
    self.loop = loop
    self.onAccept = onAccept
  }

  func start() {
    loop.register(fd, events: EPOLLIN.rawValue, handler: self)
    loop.addTickHandler { [weak self] now in self?.tick(now) }
  }

  func stop() {
    stopped = true
    loop.unregister(fd)
    close(fd)
  }

  private func tick(_ now: Int64) {
    guard !stopped, let until = pausedUntilMs, now >= until else { return }
    pausedUntilMs = nil
    loop.register(fd, events: EPOLLIN.rawValue, handler: self)
  }

  private func pause() {
    guard pausedUntilMs == nil else { return }
    pausedUntilMs = EventLoop.nowMs() + Self.pauseMs
    loop.unregister(fd)
    FDExhaustion.report()
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
        if errno == EMFILE || errno == ENFILE { pause() }
        return
      }
      var one: Int32 = 1
      setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
      onAccept(client, storage)
    }
  }
}

/// The process-wide, rate-limited report of running out of descriptors (every listener on every
/// loop reports here).
enum FDExhaustion {
  static let logIntervalMs: Int64 = 10_000
  private static let state = Mutex<(lastLogMs: Int64?, unreported: Int)>((nil, 0))

  static func report(now: Int64 = EventLoop.nowMs()) {
    let line: String? = state.withLock { s in
      s.unreported += 1
      if let last = s.lastLogMs, now - last < logIntervalMs { return nil }
      let count = s.unreported
      s.lastLogMs = now
      s.unreported = 0
      return
        "accept: out of file descriptors (\(count) time\(count == 1 ? "" : "s") since the last report);"
        + " accepting paused \(Listener.pauseMs) ms at a time; raise the limit (ulimit -n)"
    }
    if let line { Log.info(line) }
  }
}
