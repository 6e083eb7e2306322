/// Everything one event loop thread owns: its epoll loop, its curl multi handle, its listeners and
/// its client connections. Nothing in here is touched from another thread.
final class LoopContext {
  let loop: EventLoop
  let multi: CurlMulti
  /// The config in force for new requests; exchanges already running keep the one they began with.
  var runtime: ProxyRuntime
  private var listeners: [Listener] = []
  private var connections: [ObjectIdentifier: ProxyConnection] = [:]

  init(loop: EventLoop, runtime: ProxyRuntime, listenFDs: [Int32]) {
    self.loop = loop
    self.runtime = runtime
    multi = CurlMulti(loop: loop)
    listeners = listenFDs.map { Listener(fd: $0, context: self) }
    for l in listeners { l.start() }
    loop.onTick = { [unowned self] now in self.tick(now) }
  }

  var connectionCount: Int { connections.count }

  func accept(_ fd: Int32, address: String) {
    let c = ProxyConnection(fd: fd, clientAddress: address, context: self)
    connections[ObjectIdentifier(c)] = c
    c.start()
  }

  func connectionClosed(_ c: ProxyConnection) {
    connections.removeValue(forKey: ObjectIdentifier(c))
  }

  private func tick(_ now: Int64) {
    for c in Array(connections.values) where !c.closed { c.tick(nowMs: now) }
  }
}
