import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import Synchronization

/// Everything one event loop thread owns: its epoll loop, its curl multi handle, its listeners and
/// its client connections. Nothing in here is touched from another thread.
final class LoopContext {
  let loop: EventLoop
  let multi: CurlMulti
  /// OIDC proxy tokens this loop has verified (Identity/VerifiedTokens).
  let verifiedTokens = VerifiedTokens()
  /// The config in force for new requests; exchanges already running keep the one they began with.
  var runtime: ProxyRuntime
  /// Shared by all loops; survives config reloads.
  let broker: TokenBroker
  /// Recent denials for the status page; shared by all loops.
  let denials: DenialLog
  /// `limits-store`: this loop's connection to the fleet's shared limits; nil without one.
  var sharedLimits: SharedLimits?
  private var listeners: [Listener] = []
  private var connections: [ObjectIdentifier: ProxyConnection] = [:]
  /// Delayed work (mint retries), checked on every tick: 250 ms resolution is plenty for backoff.
  private var timers: [(dueMs: Int64, work: () -> Void)] = []

  init(
    loop: EventLoop, runtime: ProxyRuntime, broker: TokenBroker, denials: DenialLog,
    listenFDs: [(fd: Int32, tls: ListenerTLSSlot?)],
    openConnections: OpenConnectionCount = OpenConnectionCount()
  ) {
    self.openConnections = openConnections
    self.loop = loop
    self.runtime = runtime
    self.broker = broker
    self.denials = denials
    multi = CurlMulti(loop: loop)
    listeners = listenFDs.map { socket in
      Listener(fd: socket.fd, loop: loop) { [unowned self] fd, address in
        accept(fd, address: address, tls: socket.tls?.context)
      }
    }
    for l in listeners { l.start() }
    loop.onTick = { [unowned self] now in self.tick(now) }
    loop.onBatchEnd = { [unowned self] in self.flushPending() }
  }

  /// Connections with output to send once the current batch of events is handled, so a response
  /// head and the body that follows it in the same batch leave in one write.
  private var pendingFlush: [ProxyConnection] = []

  func flushSoon(_ c: ProxyConnection) {
    if c.flushQueued { return }
    c.flushQueued = true
    pendingFlush.append(c)
  }

  private func flushPending() {
    guard !pendingFlush.isEmpty else { return }
    let list = pendingFlush
    pendingFlush.removeAll(keepingCapacity: true)
    for c in list where !c.closed { c.flushNow() }
  }

  var connectionCount: Int { connections.count }
  /// Set by a graceful shutdown: no new connections, each connection closes after its exchange.
  private(set) var draining = false

  /// Stops accepting and lets connections finish what they are doing (SIGTERM).
  func beginDrain() {
    draining = true
    for l in listeners { l.stop() }
    listeners.removeAll()
    for c in Array(connections.values) where !c.closed { c.drain() }
  }

  /// Connections still open, readable from any thread (the main thread waits for this to reach
  /// zero when draining).
  let openConnections: OpenConnectionCount

  func accept(_ fd: Int32, address: sockaddr_storage, tls: TLSServerContext?) {
    var storage = address
    let peer =
      withUnsafeBytes(of: &storage) { DialCheck.ipAddress($0.baseAddress!, length: $0.count) }
      ?? IPAddress(ipv4: 0)
    let c = ProxyConnection(
      fd: fd, clientAddress: Socket.describe(address), peer: peer, tls: tls, context: self)
    runtime.metrics.connectionOpened()
    connections[ObjectIdentifier(c)] = c
    openConnections.set(connections.count)
    c.start()
    if draining { c.drain() }
  }

  func connectionClosed(_ c: ProxyConnection) {
    connections.removeValue(forKey: ObjectIdentifier(c))
    runtime.metrics.connectionClosed()
    openConnections.set(connections.count)
  }

  /// Runs `work` on this loop once the current callbacks have returned (curl must not be
  /// re-entered from inside its own callbacks).
  func afterDispatch(_ work: @escaping () -> Void) {
    let bound = LoopBound(work, loop: loop)
    loop.execute { bound.value() }
  }

  func schedule(afterMs: Int, _ work: @escaping () -> Void) {
    timers.append((EventLoop.nowMs() + Int64(afterMs), work))
  }

  /// Connections open at the last heap trim: after a wave of clients leaves, glibc keeps their
  /// freed buffers in per-thread arenas; give them back to the kernel.
  private var connectionsAtTrim = 0
  private var lastTrimMs: Int64 = 0

  private func trimHeapAfterWaves(_ now: Int64) {
    let count = connections.count
    if count > connectionsAtTrim { connectionsAtTrim = count }
    if connectionsAtTrim - count >= 1000 && now - lastTrimMs > 5_000 {
      malloc_trim(0)
      lastTrimMs = now
      connectionsAtTrim = count
    }
  }

  private func tick(_ now: Int64) {
    trimHeapAfterWaves(now)
    if !timers.isEmpty {
      let due = timers.filter { $0.dueMs <= now }
      timers.removeAll { $0.dueMs <= now }
      for t in due { t.work() }
    }
    for c in Array(connections.values) where !c.closed { c.tick(nowMs: now) }
  }
}

/// How many client connections one loop has open: written by the loop, read by the main thread.
final class OpenConnectionCount: Sendable {
  private let count = Mutex<Int>(0)
  func set(_ n: Int) { count.withLock { $0 = n } }
  var value: Int { count.withLock { $0 } }
}
