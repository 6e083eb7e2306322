import CredproxyConfig
import EgressPolicy
import Foundation
import Glibc
import GoogleAuth
import Wire
import XCTest

@testable import CredproxyCore

/// One client end of a socketpair, read and written from the test thread.
final class Peer {
  let fd: Int32
  init(_ fd: Int32) { self.fd = fd }
  deinit { Glibc.close(fd) }

  func send(_ text: String) {
    let bytes = Array(text.utf8)
    XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, bytes.count)
  }

  /// Reads what is there (waiting up to `timeout` for the first byte); "" at end of stream.
  func receive(timeout: Double = 10) -> String {
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&pfd, 1, Int32(timeout * 1000)) == 1 else { return "(nothing within \(timeout) s)" }
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    let n = Glibc.read(fd, &buffer, buffer.count)
    return n <= 0 ? "" : String(decoding: buffer[..<n], as: UTF8.self)
  }

  /// Reads until `marker` has been seen or the stream ends.
  func receive(until marker: String) -> String {
    var text = ""
    while !text.contains(marker) {
      let more = receive()
      if more.isEmpty || more.hasPrefix("(nothing") { return text + more }
      text += more
    }
    return text
  }

  /// True when the other side has closed and everything sent has been read.
  func atEndOfStream() -> Bool {
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      guard poll(&pfd, 1, 10_000) == 1 else { return false }
      let n = Glibc.read(fd, &buffer, buffer.count)
      if n <= 0 { return true }
    }
  }
}

/// A plain-HTTP upstream on 127.0.0.1 that answers one request when told to, then closes. Its
/// thread is joined (`finish`) before the test ends: a descriptor closed later, while another test
/// runs, could disturb tests that depend on descriptor numbers (EventLoopTests).
final class HeldUpstream: @unchecked Sendable {
  let port: Int
  private let listenFD: Int32
  private let go = DispatchSemaphore(value: 0)
  private let done = DispatchSemaphore(value: 0)
  let requests = Shared<[String]>([])

  init() throws {
    let bound = try Socket.listen(host: "127.0.0.1", port: 0)
    listenFD = bound.fd
    port = bound.port
    // The listener is non-blocking (made for epoll): wait for connections with poll.
    Thread { [self] in
      serve()
      done.signal()
    }.start()
  }

  /// Lets the upstream answer its request.
  func answer() { go.signal() }

  /// Waits for the upstream's thread to finish (it has closed its connection).
  func finish() {
    go.signal()
    XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
  }

  private func serve() {
    var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
    guard poll(&pfd, 1, 20_000) == 1 else { return }
    let fd = accept(listenFD, nil, nil)
    guard fd >= 0 else { return }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    defer { Glibc.close(fd) }
    var text = ""
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    while !text.contains("\r\n\r\n") {
      let n = Glibc.read(fd, &buffer, buffer.count)
      if n <= 0 { return }
      text += String(decoding: buffer[..<n], as: UTF8.self)
    }
    requests.with { $0.append(String(text[..<text.range(of: "\r\n\r\n")!.lowerBound])) }
    guard go.wait(timeout: .now() + 20) == .success else { return }
    let response = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
    _ = response.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
  }

  deinit { Glibc.close(listenFD) }
}

/// `ConnectionState` as a real `ProxyConnection` moves through it, on a real loop, over a
/// socketpair. What is checked is what the code exposes: `state`, `closed`, `closeWhenFlushed`.
final class ConnectionStateTests: XCTestCase {
  var loop: TestLoop!
  var endpoint: FakeTokenEndpoint!

  override func tearDown() {
    loop?.stop()
    loop = nil
  }

  func config(upstreamPort: Int = 9, headerTimeout: String = "5s") -> String {
    """
    listen 127.0.0.1:0
    access-log off
    header-timeout \(headerTimeout)
    credentials cc {
      source client-credentials token-url http://127.0.0.1:9/token client-id c client-secret env:CC_SECRET
    }
    route denied.test {
      deny
    }
    route 127.0.0.1:\(upstreamPort) {
      upstream http
    }
    route minted.test {
      upstream http
      connect-to 127.0.0.1:\(upstreamPort)
      auth oauth2 scopes https://example.test/scope
      credentials cc
    }
    """
  }

  /// A connection on one end of a socketpair, registered with the loop as `accept` would.
  /// With `fillPeer`, the socket's send buffer is full before the connection starts, so what the
  /// connection answers waits until the peer reads.
  func connect(
    _ text: String? = nil, answers: [FakeTokenEndpoint.Answer] = [], fillPeer: Bool = false
  ) throws -> (ProxyConnection, Peer) {
    let runtime = try makeRuntime(text ?? config(), environment: ["CC_SECRET": "s3cret-s3cret"])
    endpoint = FakeTokenEndpoint(answers, hold: true)
    let broker = TokenBroker(transport: endpoint.transport)
    broker.secrets.withLock { $0 = runtime.secretValues }
    loop = TestLoop(runtime: runtime, broker: broker)
    var fds: [Int32] = [0, 0]
    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
    _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
    if fillPeer {
      var size: Int32 = 4096
      setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
      let junk = [UInt8](repeating: 0x41, count: 4096)
      while junk.withUnsafeBytes({ Glibc.write(fds[0], $0.baseAddress, $0.count) }) > 0 {}
    }
    let fd = fds[0]
    let c = loop.sync { context in
      let c = ProxyConnection(
        fd: fd, clientAddress: "socketpair", peer: IPAddress(ipv4: 0x7F00_0001), tls: nil,
        context: context)
      context.runtime.metrics.connectionOpened()
      c.start()
      return c
    }
    return (c, Peer(fds[1]))
  }

  struct Seen: Equatable, CustomStringConvertible {
    var name: String
    var busy: Bool
    var hasExchange: Bool
    var hasTunnel: Bool
    var closed: Bool
    var description: String {
      "\(name) busy=\(busy) exchange=\(hasExchange) tunnel=\(hasTunnel) closed=\(closed)"
    }
  }

  func seen(_ c: ProxyConnection) -> Seen {
    let handed = Handed(c)
    return loop.sync { _ in
      let s = handed.value.state
      return Seen(
        name: s.name, busy: s.isBusy, hasExchange: s.exchange != nil, hasTunnel: s.tunnel != nil,
        closed: handed.value.closed)
    }
  }

  /// Waits until the connection is in state `name` (the loop handles the bytes asynchronously).
  @discardableResult
  func wait(
    _ c: ProxyConnection, for name: String, file: StaticString = #filePath, line: UInt = #line
  ) -> Seen {
    var last = seen(c)
    eventually("last seen: \(last)", file: file, line: line) {
      last = seen(c)
      return last.name == name
    }
    return last
  }

  func expect(
    _ s: Seen, _ name: String, busy: Bool, exchange: Bool = false,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(
      s,
      Seen(
        name: name, busy: busy, hasExchange: exchange, hasTunnel: false, closed: name == "closed"),
      file: file, line: line)
  }

  // MARK: idle and reading the head

  func testANewConnectionIsIdleAndTheFirstByteStartsReadingTheHead() throws {
    let (c, peer) = try connect()
    expect(seen(c), "idle", busy: false)
    peer.send("G")
    expect(wait(c, for: "readingHead"), "readingHead", busy: true)
    peer.send("ET http://denied.test/ HTTP/1.1\r\n")
    expect(seen(c), "readingHead", busy: true)
  }

  func testAMalformedHeadIsAnsweredThenTheConnectionClosesOnceTheAnswerIsWritten() throws {
    // The peer's buffer is full: the 400 cannot be written yet, so `closing` is observable.
    let (c, peer) = try connect(fillPeer: true)
    peer.send("NOT A REQUEST\r\n\r\n")
    expect(wait(c, for: "closing"), "closing", busy: false)
    XCTAssertTrue(loop.sync { _ in Handed(c).value.closeWhenFlushed })
    // The peer reads: the answer goes out and the connection closes.
    let text = peer.receive(until: "HTTP/1.1 400")
    XCTAssertTrue(text.contains("HTTP/1.1 400"), String(text.suffix(300)))
    expect(wait(c, for: "closed"), "closed", busy: false)
    XCTAssertTrue(peer.atEndOfStream())
  }

  // MARK: refusals

  func testARefusedRequestWithoutABodyKeepsTheConnectionForTheNext() throws {
    let (c, peer) = try connect()
    let request = "GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n"
    peer.send(request)
    let first = peer.receive(until: "\r\n\r\n")
    XCTAssertTrue(first.hasPrefix("HTTP/1.1 403"), first)
    XCTAssertFalse(first.lowercased().contains("connection: close"), first)
    expect(wait(c, for: "idle"), "idle", busy: false)
    // Keep-alive: the same connection answers the next request.
    peer.send(request)
    let second = peer.receive(until: "\r\n\r\n")
    XCTAssertTrue(second.hasPrefix("HTTP/1.1 403"), second)
    expect(wait(c, for: "idle"), "idle", busy: false)
  }

  func testARefusedRequestWithABodyClosesTheConnection() throws {
    let (c, peer) = try connect()
    peer.send(
      "POST http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\nContent-Length: 5\r\n\r\nhello")
    let text = peer.receive(until: "\r\n\r\n")
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 403"), text)
    XCTAssertTrue(text.lowercased().contains("connection: close"), text)
    expect(wait(c, for: "closed"), "closed", busy: false)
    XCTAssertTrue(peer.atEndOfStream())
  }

  // MARK: header timeout

  func testAHeadNotFinishedInTimeGets408AndCloses() throws {
    let (c, peer) = try connect()
    peer.send("GET http://denied.test/ HTTP/1.1\r\n")
    wait(c, for: "readingHead")
    let handed = Handed(c)
    // The loop's tick, called directly: before the deadline nothing happens, after it a 408.
    loop.sync { _ in handed.value.tick(nowMs: EventLoop.nowMs()) }
    expect(seen(c), "readingHead", busy: true)
    loop.sync { _ in handed.value.tick(nowMs: EventLoop.nowMs() + 5_001) }
    let text = peer.receive(until: "\r\n\r\n")
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 408"), text)
    expect(seen(c), "closed", busy: false)
    XCTAssertTrue(peer.atEndOfStream())
  }

  /// The same through a real listener and the loop's own 250 ms tick (header-timeout 300ms; the
  /// only bound is the generous 10 s wait for the answer).
  func testTheLoopsTickEnforcesTheHeaderTimeout() throws {
    let runtime = try makeRuntime(config(headerTimeout: "300ms"))
    let bound = try Socket.listen(host: "127.0.0.1", port: 0)
    loop = TestLoop(runtime: runtime, broker: TokenBroker(), listenFDs: [(bound.fd, nil)])
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(bound.port).bigEndian)
    address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    XCTAssertEqual(connected, 0)
    let peer = Peer(fd)
    peer.send("GET http://denied.test/ HTTP/1.1\r\n")
    let text = peer.receive(until: "\r\n\r\n")
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 408"), text)
    XCTAssertTrue(peer.atEndOfStream())
    eventually { loop.sync { $0.connectionCount } == 0 }
  }

  // MARK: exchanging, awaiting a token

  func testAnExchangeOwnsItsStateUntilTheAnswerThenTheConnectionIsIdle() throws {
    let upstream = try HeldUpstream()
    defer { upstream.finish() }
    let (c, peer) = try connect(config(upstreamPort: upstream.port))
    peer.send(
      "GET http://127.0.0.1:\(upstream.port)/x HTTP/1.1\r\nHost: 127.0.0.1:\(upstream.port)\r\n\r\n"
    )
    expect(wait(c, for: "exchanging"), "exchanging", busy: true, exchange: true)
    eventually { upstream.requests.value.count == 1 }
    upstream.answer()
    let text = peer.receive(until: "ok")
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), text)
    expect(wait(c, for: "idle"), "idle", busy: false)
  }

  func testAwaitingATokenThenAFailedMintAnswers503NamingTheCredential() throws {
    let (c, peer) = try connect(answers: [FakeTokenEndpoint.error(400, "invalid_client")])
    peer.send("GET http://minted.test/ HTTP/1.1\r\nHost: minted.test\r\n\r\n")
    // First try: no retried exchange rides along.
    expect(wait(c, for: "awaitingToken"), "awaitingToken", busy: true)
    endpoint.release()
    let text = peer.receive(until: "invalid_client")
    XCTAssertTrue(text.hasPrefix("HTTP/1.1 503"), text)
    XCTAssertTrue(
      text.contains("credential \\\"cc\\\" (client-credentials http://127.0.0.1:9/token)")
        || text.contains("credential \"cc\" (client-credentials http://127.0.0.1:9/token)"), text)
    XCTAssertFalse(text.contains("s3cret-s3cret"), text)
    expect(wait(c, for: "idle"), "idle", busy: false)
  }

  // MARK: the client leaving

  func testAClientThatLeavesWhileIdleClosesTheConnection() throws {
    let (c, peer) = try connect()
    Glibc.shutdown(peer.fd, Int32(SHUT_WR))
    expect(wait(c, for: "closed"), "closed", busy: false)
  }
}
