import CSystem
import Glibc
import HTTP1

/// A small listener for credproxy's own endpoints (the admin listener, the metadata-server stub),
/// served on one loop: one request per connection, answered by `answer` and closed.
///
/// Deadlines are checked on the loop's tick (a silent peer sends no events, so an event-driven
/// check never fires): the whole request head within `headerDeadlineMs` of the accept, and no
/// `idleDeadlineMs` without a byte read or written. At most `maxConnections` are open at once;
/// past that a new connection is closed at once, so idle clients cannot starve the proxy of
/// descriptors.
final class OneRequestServer {
  static let headerDeadlineMs: Int64 = 10_000
  static let idleDeadlineMs: Int64 = 5_000
  static let maxConnections = 64

  /// The whole response (head and body) for a request head, or for one the parser refused.
  typealias Answer = (Result<RequestHead, HTTPParseError>) -> [UInt8]

  unowned let loop: EventLoop
  let answer: Answer
  private var acceptor: Listener?
  fileprivate var connections: [ObjectIdentifier: OneRequestConnection] = [:]

  init(fd: Int32, loop: EventLoop, answer: @escaping Answer) {
    self.loop = loop
    self.answer = answer
    let acceptor = Listener(fd: fd, loop: loop) { [unowned self] client, _ in
      guard connections.count < Self.maxConnections else {
        close(client)
        return
      }
      let c = OneRequestConnection(fd: client, server: self)
      connections[ObjectIdentifier(c)] = c
      c.start()
    }
    acceptor.start()
    self.acceptor = acceptor
    loop.addTickHandler { [unowned self] now in
      for c in Array(connections.values) { c.tick(nowMs: now) }
    }
  }

  /// Connections open now.
  var connectionCount: Int { connections.count }
}

final class OneRequestConnection: EventHandler {
  private let fd: Int32
  private unowned let server: OneRequestServer
  private let input = ByteBuffer()
  private let output = ByteBuffer()
  private var parser = RequestHeadParser()
  private let startedMs = EventLoop.nowMs()
  private var lastActivityMs = EventLoop.nowMs()
  private var headComplete = false
  private var closed = false

  init(fd: Int32, server: OneRequestServer) {
    self.fd = fd
    self.server = server
  }

  func start() {
    server.loop.register(fd, events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, handler: self)
  }

  /// Called on every tick: enforces the header and idle deadlines.
  func tick(nowMs: Int64) {
    if !headComplete && nowMs - startedMs > OneRequestServer.headerDeadlineMs { return finish() }
    if nowMs - lastActivityMs > OneRequestServer.idleDeadlineMs { return finish() }
  }

  func handleEvents(fd: Int32, events: UInt32) {
    if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { return finish() }
    if events & EPOLLOUT.rawValue != 0 { return flush() }
    if headComplete { return }
    let n = input.fill(max: 16 * 1024) { Glibc.read(fd, $0, $1) }
    if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return finish() }
    if n > 0 { lastActivityMs = EventLoop.nowMs() }
    switch input.withReadableBytes({ parser.parse($0) }) {
    case .needMore:
      return
    case .failed(let e):
      headComplete = true
      output.append(server.answer(.failure(e)))
      flush()
    case .complete(let head, _):
      headComplete = true
      output.append(server.answer(.success(head)))
      flush()
    }
  }

  private func flush() {
    while !output.isEmpty {
      let n = output.drain { Glibc.write(fd, $0, $1) }
      if n > 0 { lastActivityMs = EventLoop.nowMs() }
      if n < 0 && errno == EAGAIN {
        server.loop.modify(fd, events: EPOLLOUT.rawValue)
        return
      }
      if n <= 0 { break }
    }
    finish()
  }

  private func finish() {
    guard !closed else { return }
    closed = true
    server.loop.unregister(fd)
    close(fd)
    server.connections[ObjectIdentifier(self)] = nil
  }
}
