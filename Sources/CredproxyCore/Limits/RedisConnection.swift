import CSystem
import Dispatch
import Foundation
import Glibc
import Synchronization

/// Why Redis did not answer a command.
enum RedisFailure: Error, Equatable, CustomStringConvertible {
  /// No connection (and none is being made: waiting to retry).
  case down(String)
  /// No answer within the command's timeout.
  case timeout

  var description: String {
    switch self {
    case .down(let why): return "not connected (\(why))"
    case .timeout: return "no answer in time"
    }
  }
}

/// How the shared limits store is doing, process-wide: for `/metrics`, `/status` and the log.
final class LimitsStoreHealth: Sendable {
  let description: String
  let loops: Int
  /// Loops whose connection is up (and authenticated).
  let connectedLoops = Atomic<Int>(0)
  /// Connection failures, protocol errors and error replies.
  let errors = Atomic<Int>(0)
  /// Requests that waited the full timeout for an answer.
  let timeouts = Atomic<Int>(0)
  /// Requests decided without the store (the outage policy applied).
  let unavailable = Atomic<Int>(0)
  let failOpen: Bool

  init(description: String, loops: Int, failOpen: Bool) {
    self.description = description
    self.loops = loops
    self.failOpen = failOpen
  }

  var up: Bool { connectedLoops.load(ordering: .relaxed) > 0 }

  /// `redis 127.0.0.1:6379, 2/2 connections, on outage: limit locally`.
  var statusDetail: String {
    let n = connectedLoops.load(ordering: .relaxed)
    return
      "\(description), \(n)/\(loops) connections, on outage: \(failOpen ? "limit locally" : "refuse")"
  }

  var prometheusText: String {
    """
    # HELP credproxy_limits_store_up Whether the shared limits store (limits-store) is reachable: 1 when at least one event loop's connection is up.
    # TYPE credproxy_limits_store_up gauge
    credproxy_limits_store_up \(up ? 1 : 0)
    # HELP credproxy_limits_store_connections Event-loop connections to the limits store that are up.
    # TYPE credproxy_limits_store_connections gauge
    credproxy_limits_store_connections \(connectedLoops.load(ordering: .relaxed))
    # HELP credproxy_limits_store_errors_total Limits store connection failures and error replies.
    # TYPE credproxy_limits_store_errors_total counter
    credproxy_limits_store_errors_total \(errors.load(ordering: .relaxed))
    # HELP credproxy_limits_store_timeouts_total Requests that waited the whole limits-store timeout.
    # TYPE credproxy_limits_store_timeouts_total counter
    credproxy_limits_store_timeouts_total \(timeouts.load(ordering: .relaxed))
    # HELP credproxy_limits_store_unavailable_total Requests decided by the outage policy because the store could not answer.
    # TYPE credproxy_limits_store_unavailable_total counter
    credproxy_limits_store_unavailable_total \(unavailable.load(ordering: .relaxed))

    """
  }
}

/// One event loop's connection to Redis: a non-blocking socket in the loop's epoll set, commands
/// pipelined in order, replies matched to them first-in first-out. Every command has a deadline
/// (its own timerfd), so no caller waits longer than the store's timeout; a reply that comes after
/// its deadline goes to the command's `late` handler. A failed connection is retried with backoff
/// (100 ms doubling to 2 s); while it is down, commands fail at once.
final class RedisConnection: EventHandler {
  typealias Callback = (Result<RESPValue, RedisFailure>) -> Void

  private enum State: Equatable {
    case disconnected(retryAtMs: Int64)
    case resolving
    case connecting
    case ready
  }

  private struct Pending {
    let deadlineMs: Int64
    /// nil once answered (or timed out).
    var callback: Callback?
    /// For a reply after the deadline.
    var late: ((RESPValue) -> Void)?
  }

  let loop: EventLoop
  let host: String
  let port: Int
  let password: String?
  let timeoutMs: Int
  let health: LimitsStoreHealth
  private var state = State.disconnected(retryAtMs: 0)
  private var fd: Int32 = -1
  private let timerFD: Int32
  private var timerArmedMs: Int64?
  private var out: [UInt8] = []
  private var reader = RESP.Reader()
  private var pending: [Pending] = []
  private var pendingStart = 0
  private var backoffMs: Int64 = 100
  /// The last reason the connection went down, logged once per outage.
  private var downReason: String?
  /// Counted in `health.connectedLoops`: connected, and authenticated when there is a password.
  private var counted = false

  init(
    loop: EventLoop, host: String, port: Int, password: String?, timeoutMs: Int,
    health: LimitsStoreHealth
  ) {
    self.loop = loop
    self.host = host
    self.port = port
    self.password = password
    self.timeoutMs = timeoutMs
    self.health = health
    timerFD = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
    precondition(timerFD >= 0, "timerfd_create failed")
  }

  /// Registers the timer; call on the loop once it runs.
  func start() {
    loop.register(timerFD, events: EPOLLIN.rawValue, handler: self)
    connectIfDue()
  }

  var isReady: Bool { state == .ready && counted }

  /// Starts a connection when there is none and the backoff has passed (also from the tick, so
  /// the store's health recovers without traffic).
  func connectIfDue() {
    guard case .disconnected(let retryAt) = state, EventLoop.nowMs() >= retryAt else { return }
    state = .resolving
    if let pw = password { enqueueAuth(pw) }
    let bound = LoopBound(self, loop: loop)
    let host = self.host
    let port = self.port
    DispatchQueue.global().async {
      let result = TunnelUpstream.resolve(host: host, port: port)
      let answer = LoopBound(result, loop: bound.loop)
      bound.loop.execute { bound.value.dial(answer.value) }
    }
  }

  /// Sends `args`; `callback` gets the reply or a failure, exactly once, within the timeout.
  func send(_ args: [String], callback: Callback?, late: ((RESPValue) -> Void)? = nil) {
    loop.assertInLoop()
    connectIfDue()
    if case .disconnected = state {
      callback?(.failure(.down(downReason ?? "not connected")))
      return
    }
    let deadline = EventLoop.nowMs() + Int64(timeoutMs)
    out += RESP.command(args)
    pending.append(Pending(deadlineMs: deadline, callback: callback, late: late))
    if callback != nil { arm(deadline) }
    if state == .ready { flush() }
  }

  private func enqueueAuth(_ pw: String) {
    out += RESP.command(["AUTH", pw])
    pending.append(
      Pending(
        deadlineMs: EventLoop.nowMs() + 5_000,
        callback: { [unowned self] result in
          if case .success(.error(let e)) = result {
            // The server's text, never the password.
            self.fail("AUTH refused: \(e)")
          } else if case .success = result {
            self.markUp()
          }
        }, late: nil))
  }

  private func dial(_ result: Result<[sockaddr_storage], TunnelFailure>) {
    guard state == .resolving else { return }
    guard case .success(let addresses) = result, let address = addresses.first else {
      if case .failure(let f) = result { fail(f.message) } else { fail("no address") }
      return
    }
    switch Socket.connectNonBlocking(to: address) {
    case .failure(let error):
      fail(error.description)
      return
    case .success(let socket):
      fd = socket
    }
    state = .connecting
    loop.register(fd, events: EPOLLIN.rawValue | EPOLLOUT.rawValue, handler: self)
  }

  func handleEvents(fd: Int32, events: UInt32) {
    if fd == timerFD {
      var expirations: UInt64 = 0
      _ = read(timerFD, &expirations, 8)
      timerArmedMs = nil
      expire()
      return
    }
    guard fd == self.fd, fd >= 0 else { return }
    if state == .connecting {
      var err: Int32 = 0
      var len = socklen_t(MemoryLayout<Int32>.size)
      let rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
      if rc != 0 || err != 0 {
        fail("connect: \(String(cString: strerror(rc != 0 ? errno : err)))")
        return
      }
      if events & (EPOLLOUT.rawValue | EPOLLIN.rawValue) == 0 { return }
      state = .ready
      if password == nil { markUp() }
    }
    if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
      guard readReplies() else { return }
    }
    if state == .ready { flush() }
  }

  /// Reads what is there and hands out replies; false when the connection failed.
  private func readReplies() -> Bool {
    var chunk = [UInt8](repeating: 0, count: 16_384)
    while true {
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n > 0 {
        chunk.withUnsafeBytes { reader.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        // A server that never stops sending must not keep the loop here or grow the buffer:
        // parse what came (the reader refuses an oversized reply); epoll reports the rest.
        if n < chunk.count || reader.unparsedCount > RESP.Reader.maxBuffered { break }
        continue
      }
      if n == 0 {
        fail("connection closed by the server")
        return false
      }
      if errno == EAGAIN || errno == EWOULDBLOCK { break }
      if errno == EINTR { continue }
      fail("recv: \(String(cString: strerror(errno)))")
      return false
    }
    while true {
      let reply: RESPValue?
      do { reply = try reader.next() } catch {
        fail("protocol error: \(error.message)")
        return false
      }
      guard let reply else { return true }
      guard pendingStart < pending.count else {
        fail("a reply nobody asked for")
        return false
      }
      var p = pending[pendingStart]
      pending[pendingStart].callback = nil
      pendingStart += 1
      if pendingStart == pending.count {
        pending.removeAll(keepingCapacity: true)
        pendingStart = 0
      }
      // NOSCRIPT is expected after a Redis restart (the script is sent again), not an error.
      if case .error(let e) = reply, !e.hasPrefix("NOSCRIPT") {
        health.errors.add(1, ordering: .relaxed)
      }
      if let callback = p.callback {
        p.callback = nil
        callback(.success(reply))
      } else {
        p.late?(reply)
      }
      if fd < 0 { return false }  // a callback failed the connection
    }
  }

  private func flush() {
    while !out.isEmpty {
      let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n > 0 {
        out.removeFirst(n)
        continue
      }
      if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
      if n < 0 && errno == EINTR { continue }
      fail("send: \(String(cString: strerror(errno)))")
      return
    }
    if fd >= 0 {
      loop.modify(fd, events: EPOLLIN.rawValue | (out.isEmpty ? 0 : EPOLLOUT.rawValue))
    }
  }

  /// Fails the commands whose deadline passed; a connection that has left a command unanswered
  /// for much longer than the timeout is treated as dead.
  private func expire() {
    let now = EventLoop.nowMs()
    var next: Int64?
    for i in pendingStart..<pending.count {
      if let callback = pending[i].callback {
        if pending[i].deadlineMs <= now {
          pending[i].callback = nil
          health.timeouts.add(1, ordering: .relaxed)
          callback(.failure(.timeout))
          if case .disconnected = state { return }
        } else {
          next = min(next ?? .max, pending[i].deadlineMs)
        }
      }
    }
    if pendingStart < pending.count,
      now - pending[pendingStart].deadlineMs > max(1_000, 10 * Int64(timeoutMs))
    {
      fail("no answer for \(now - pending[pendingStart].deadlineMs + Int64(timeoutMs)) ms")
      return
    }
    if pendingStart < pending.count && next == nil {
      next = now + max(1_000, 10 * Int64(timeoutMs))
    }
    if let next { arm(next) }
  }

  private func arm(_ deadlineMs: Int64) {
    if let armed = timerArmedMs, armed <= deadlineMs { return }
    timerArmedMs = deadlineMs
    let ms = max(1, deadlineMs - EventLoop.nowMs())
    var spec = itimerspec()
    spec.it_value.tv_sec = Int(ms / 1000)
    spec.it_value.tv_nsec = Int(ms % 1000) * 1_000_000
    timerfd_settime(timerFD, 0, &spec, nil)
  }

  private func markUp() {
    guard !counted else { return }
    counted = true
    backoffMs = 100
    health.connectedLoops.add(1, ordering: .relaxed)
    if let reason = downReason, loop.index == 0 {
      Self.log("\(health.description): connected again (was: \(reason))")
    }
    downReason = nil
  }

  /// Drops the connection; every waiting command fails now.
  private func fail(_ reason: String) {
    health.errors.add(1, ordering: .relaxed)
    if counted { health.connectedLoops.subtract(1, ordering: .relaxed) }
    counted = false
    if downReason == nil && loop.index == 0 {
      Self.log(
        "\(health.description): \(reason); \(health.failOpen ? "limiting locally (on-outage open)" : "refusing limited requests (on-outage closed)") until it is back"
      )
    }
    downReason = reason
    if fd >= 0 {
      loop.unregister(fd)
      Glibc.close(fd)
      fd = -1
    }
    state = .disconnected(retryAtMs: EventLoop.nowMs() + backoffMs)
    backoffMs = min(backoffMs * 2, 2_000)
    let waiting = pending[pendingStart...].compactMap(\.callback)
    // (A timer still armed fires once more and finds nothing to expire.)
    pending.removeAll()
    pendingStart = 0
    out.removeAll()
    reader = RESP.Reader()
    for callback in waiting { callback(.failure(.down(reason))) }
  }

  static func log(_ line: String) {
    FileHandle.standardError.write(Data("credproxy: limits-store \(line)\n".utf8))
  }
}
