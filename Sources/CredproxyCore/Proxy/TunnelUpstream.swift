import CSystem
import Foundation
import Glibc
import Wire

/// The upstream side of a CONNECT tunnel: a TCP socket we resolve, vet and dial ourselves, then
/// relay bytes through untouched (they are TLS; nothing is injected).
///
/// DNS runs on a global queue (getaddrinfo blocks) and the answer hops back to the loop; the
/// address we check is the address we dial, so a second lookup cannot change it (no rebinding).
final class TunnelUpstream: EventHandler {
  enum State { case resolving, connecting, open, closed }

  /// Called on the loop when the dial finished: nil on success, else why it failed.
  var onConnected: ((TunnelFailure?) -> Void)?
  /// Called when the upstream has bytes for the client, or closed.
  var onReadable: (() -> Void)?
  var onClosed: (() -> Void)?

  private(set) var state = State.resolving
  private(set) var fd: Int32 = -1
  private unowned let loop: EventLoop
  let inbound = ByteBuffer()  // upstream → client, waiting for the client
  private var interest: UInt32 = 0
  /// The client side has more bytes for us than we could write: wait for EPOLLOUT.
  private var writeBlocked = false

  init(loop: EventLoop) {
    self.loop = loop
  }

  enum DialVerdict: Sendable { case allow, report, refuse }

  /// Report mode let a refused address be dialled (the audit log says so).
  private(set) var dialledDespiteRefusal = false

  /// Resolves `host`, keeps the first address `vet` does not refuse, and connects to it. The
  /// connection enforces the connect timeout on its tick.
  func dial(
    host: String, port: Int,
    vet: @escaping @Sendable (sockaddr_storage) -> DialVerdict
  ) {
    let loop = self.loop
    let bound = LoopBound(self, loop: loop)
    DispatchQueue.global().async {
      let result = Self.resolve(host: host, port: port)
      let vetted: Result<sockaddr_storage, TunnelFailure>
      var reported = false
      switch result {
      case .failure(let f): vetted = .failure(f)
      case .success(let addresses):
        let verdicts = addresses.map { ($0, vet($0)) }
        if let ok = verdicts.first(where: { $0.1 == .allow })
          ?? verdicts.first(where: { $0.1 == .report })
        {
          reported = ok.1 == .report
          vetted = .success(ok.0)
        } else {
          let shown = addresses.map(Socket.describeHost).joined(separator: ", ")
          vetted = .failure(.blocked("\(host) resolves to \(shown), which this route may not dial"))
        }
      }
      let answer = LoopBound(vetted, loop: loop)
      let wasReported = reported
      loop.execute {
        bound.value.dialledDespiteRefusal = wasReported
        bound.value.connect(answer.value)
      }
    }
  }

  private func connect(_ target: Result<sockaddr_storage, TunnelFailure>) {
    guard state == .resolving else { return }
    switch target {
    case .failure(let f):
      finishDial(f)
    case .success(let address):
      switch Socket.connectNonBlocking(to: address) {
      case .failure(let error):
        finishDial(.connect(error.description))
        return
      case .success(let socket):
        fd = socket
      }
      state = .connecting
      interest = EPOLLOUT.rawValue
      loop.register(fd, events: interest, handler: self)
    }
  }

  private func finishDial(_ failure: TunnelFailure?) {
    let callback = onConnected
    onConnected = nil
    if failure != nil { close() }
    callback?(failure)
  }

  func handleEvents(fd: Int32, events: UInt32) {
    switch state {
    case .connecting:
      var error: Int32 = 0
      var length = socklen_t(MemoryLayout<Int32>.size)
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
      if error != 0 {
        finishDial(.connect(String(cString: strerror(error))))
        return
      }
      state = .open
      updateInterest(clientHasRoom: true)
      finishDial(nil)
    case .open:
      if events & EPOLLOUT.rawValue != 0 { writeBlocked = false }
      if events & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue)
        != 0
      {
        onReadable?()
      } else if events & EPOLLOUT.rawValue != 0 {
        onReadable?()  // the connection pushes what it has pending
      }
    case .resolving, .closed:
      break
    }
  }

  /// Reads what the upstream sent into `inbound`. Returns false once the upstream closed.
  func readAvailable(limit: Int) -> Bool {
    while inbound.count < limit {
      let n = inbound.fill(max: 64 * 1024) { Glibc.read(fd, $0, $1) }
      if n > 0 { continue }
      if n == 0 { return false }
      if errno == EINTR { continue }
      return errno == EAGAIN || errno == EWOULDBLOCK
    }
    return true
  }

  /// Writes as much of `from` as the socket takes. Returns false if the upstream is gone.
  func write(from buffer: ByteBuffer) -> Bool {
    while !buffer.isEmpty {
      let n = buffer.drain { Glibc.write(fd, $0, $1) }
      if n > 0 { continue }
      if n < 0 && errno == EINTR { continue }
      if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
        writeBlocked = true
        return true
      }
      return false
    }
    return true
  }

  var hasPendingWrite: Bool { writeBlocked }

  func updateInterest(clientHasRoom: Bool) {
    guard state == .open else { return }
    var want = EPOLLRDHUP.rawValue
    if clientHasRoom { want |= EPOLLIN.rawValue }
    if writeBlocked { want |= EPOLLOUT.rawValue }
    if want != interest {
      interest = want
      loop.modify(fd, events: want)
    }
  }

  func close() {
    guard state != .closed else { return }
    state = .closed
    if fd >= 0 {
      loop.unregister(fd)
      Glibc.close(fd)
      fd = -1
    }
    onReadable = nil
    onConnected = nil
  }

  static func resolve(host: String, port: Int) -> Result<[sockaddr_storage], TunnelFailure> {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var list: UnsafeMutablePointer<addrinfo>? = nil
    let rc = getaddrinfo(host, String(port), &hints, &list)
    guard rc == 0, let list else {
      return .failure(.dns("cannot resolve \(host): \(String(cString: gai_strerror(rc)))"))
    }
    defer { freeaddrinfo(list) }
    var out: [sockaddr_storage] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = list
    while let ai = cursor {
      if let addr = ai.pointee.ai_addr {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { dst in
          dst.copyMemory(
            from: UnsafeRawBufferPointer(start: addr, count: Int(ai.pointee.ai_addrlen)))
        }
        out.append(storage)
      }
      cursor = ai.pointee.ai_next
    }
    return .success(out)
  }
}

enum TunnelFailure: Error {
  case dns(String)
  case connect(String)
  case blocked(String)

  var code: ErrorCode {
    switch self {
    case .dns: return .upstreamDNS
    case .connect: return .upstreamConnect
    case .blocked: return .blockedAddress
    }
  }
  var message: String {
    switch self {
    case .dns(let m), .connect(let m), .blocked(let m): return m
    }
  }
}
