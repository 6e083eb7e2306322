import CSystem
import Glibc

struct SocketError: Error, CustomStringConvertible {
  var description: String
  init(_ what: String, errno code: Int32 = errno) {
    description = "\(what): \(String(cString: strerror(code)))"
  }
  /// A start-up failure that is not a system call's (no errno text).
  init(message: String) { description = message }
}

/// A listening TCP socket. Every event loop binds its own with SO_REUSEPORT, so the kernel spreads
/// new connections across loops and no accept hand-off between threads is needed.
enum Socket {
  /// Starts a non-blocking TCP connect (TCP_NODELAY) to `address`: the socket, connected or still
  /// connecting (wait for EPOLLOUT, then read SO_ERROR), or why not (nothing is left open then).
  static func connectNonBlocking(to address: sockaddr_storage) -> Result<Int32, SocketError> {
    var address = address
    let family = Int32(address.ss_family)
    let fd = socket(
      family,
      Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return .failure(SocketError("socket")) }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let length = socklen_t(
      family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
    }
    if rc != 0 && errno != EINPROGRESS {
      let error = SocketError("connect to \(describe(address))")
      Glibc.close(fd)
      return .failure(error)
    }
    return .success(fd)
  }

  static func listen(host: String, port: Int) throws(SocketError) -> (fd: Int32, port: Int) {
    var storage = sockaddr_storage()
    var length: socklen_t = 0
    let family: Int32
    if host.contains(":") {
      family = AF_INET6
      var a = sockaddr_in6()
      a.sin6_family = sa_family_t(AF_INET6)
      a.sin6_port = in_port_t(UInt16(port).bigEndian)
      guard inet_pton(AF_INET6, host, &a.sin6_addr) == 1 else {
        throw SocketError("invalid IPv6 listen address \(host)", errno: EINVAL)
      }
      withUnsafeBytes(of: a) { src in
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
      }
      length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    } else {
      family = AF_INET
      var a = sockaddr_in()
      a.sin_family = sa_family_t(AF_INET)
      a.sin_port = in_port_t(UInt16(port).bigEndian)
      let name = host == "localhost" ? "127.0.0.1" : host
      guard inet_pton(AF_INET, name, &a.sin_addr) == 1 else {
        throw SocketError("invalid listen address \(host); expected an IP address", errno: EINVAL)
      }
      withUnsafeBytes(of: a) { src in
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) }
      }
      length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }
    let fd = socket(
      family,
      Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketError("socket") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else {
      let e = errno
      close(fd)
      throw SocketError("cannot listen on \(host):\(port)", errno: e)
    }
    // A small backlog causes 1 s SYN-retry stalls under bursts (design notes).
    guard Glibc.listen(fd, SOMAXCONN) == 0 else {
      let e = errno
      close(fd)
      throw SocketError("listen", errno: e)
    }
    return (fd, localPort(fd))
  }

  static func localPort(_ fd: Int32) -> Int {
    var storage = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return port(of: storage)
  }

  static func port(of storage: sockaddr_storage) -> Int {
    var s = storage
    switch Int32(s.ss_family) {
    case AF_INET:
      return withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
          Int(UInt16(bigEndian: $0.pointee.sin_port))
        }
      }
    case AF_INET6:
      return withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
          Int(UInt16(bigEndian: $0.pointee.sin6_port))
        }
      }
    default: return 0
    }
  }

  /// The address without the port: `1.2.3.4`, `::1`.
  static func describeHost(_ storage: sockaddr_storage) -> String {
    let full = describe(storage)
    if full.hasPrefix("["), let close = full.firstIndex(of: "]") {
      return String(full[full.index(after: full.startIndex)..<close])
    }
    return full.split(separator: ":").first.map(String.init) ?? full
  }

  /// `1.2.3.4:567` or `[::1]:567`, for logs.
  static func describe(_ storage: sockaddr_storage) -> String {
    var s = storage
    var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(s.ss_family) {
    case AF_INET:
      return withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p -> String in
          var addr = p.pointee.sin_addr
          inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count))
          return "\(cString(buf)):\(UInt16(bigEndian: p.pointee.sin_port))"
        }
      }
    case AF_INET6:
      return withUnsafePointer(to: &s) {
        $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p -> String in
          var addr = p.pointee.sin6_addr
          inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count))
          return "[\(cString(buf))]:\(UInt16(bigEndian: p.pointee.sin6_port))"
        }
      }
    default: return "unknown"
    }
  }
}
