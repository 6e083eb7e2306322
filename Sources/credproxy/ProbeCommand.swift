import Foundation
import Glibc
import Wire

// `credproxy probe`: one GET to the admin listener, for health checks that run a command
// (Kubernetes exec probes in an image with no shell or curl). The admin token comes from an
// environment variable, so it is never on a command line.

let probeUsage = """
  usage: credproxy probe URL [--token-env NAME] [--timeout SECONDS]

  GETs URL (http://127.0.0.1:9090/readyz) and exits 0 on a 2xx answer, 1 otherwise (printing
  the status line and body). --token-env NAME sends `Authorization: Bearer $NAME`, for an
  admin listener with a token. --timeout (default 2 seconds) bounds the whole exchange.
  """

func runProbeCommand(_ args: [String]) -> Never {
  var rest = ArraySlice(args.dropFirst())
  var url: String?
  var tokenEnv: String?
  var timeout = 2.0
  while let arg = rest.popFirst() {
    switch arg {
    case "--help", "-h":
      print(probeUsage)
      exit(0)
    case "--token-env":
      guard let v = rest.popFirst() else { fail("credproxy: --token-env needs a value", code: 2) }
      tokenEnv = v
    case "--timeout":
      guard let v = rest.popFirst(), let t = Double(v), t > 0 else {
        fail("credproxy: --timeout takes a number of seconds", code: 2)
      }
      timeout = t
    default:
      guard url == nil, arg.hasPrefix("http://") else {
        fail("credproxy: unexpected argument \"\(arg)\" for probe\n\n\(probeUsage)", code: 2)
      }
      url = arg
    }
  }
  guard let url, let target = ProbeTarget(url) else {
    fail("credproxy: probe needs an http://HOST:PORT/PATH URL\n\n\(probeUsage)", code: 2)
  }
  var token: String?
  if let tokenEnv {
    guard let t = ProcessInfo.processInfo.environment[tokenEnv] else {
      fail("credproxy: probe: env:\(tokenEnv) is not set", code: 2)
    }
    token = t
  }
  switch target.get(token: token, timeout: timeout) {
  case .success(let (status, text)):
    print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    exit((200..<300).contains(status) ? 0 : 1)
  case .failure(let e):
    fail("credproxy: probe \(url): \(e.message)", code: 1)
  }
}

struct ProbeError: Error { var message: String }

struct ProbeTarget {
  var host: String
  var port: String
  var path: String

  init?(_ url: String) {
    let rest = url.dropFirst("http://".count)
    let slash = rest.firstIndex(of: "/") ?? rest.endIndex
    let authority = rest[..<slash]
    path = slash == rest.endIndex ? "/" : String(rest[slash...])
    if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
      host = String(authority[authority.index(after: authority.startIndex)..<close])
      let after = authority[authority.index(after: close)...]
      port = after.hasPrefix(":") ? String(after.dropFirst()) : "80"
    } else if let colon = authority.lastIndex(of: ":") {
      host = String(authority[..<colon])
      port = String(authority[authority.index(after: colon)...])
    } else {
      host = String(authority)
      port = "80"
    }
    guard !host.isEmpty, Int(port) != nil,
      !path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F })
    else { return nil }
  }

  /// The status code and the whole answer (status line, then the body).
  func get(token: String?, timeout: Double) -> Result<(Int, String), ProbeError> {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, port, &hints, &list) == 0, let first = list else {
      return .failure(ProbeError(message: "cannot resolve \(host)"))
    }
    defer { freeaddrinfo(list) }
    let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
    let fd = socket(first.pointee.ai_family, type, 0)
    guard fd >= 0 else { return .failure(ProbeError(message: "socket: \(errnoText())")) }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
      return .failure(ProbeError(message: "connect: \(errnoText())"))
    }
    // An IPv6 literal goes in brackets in Host, as in the URL (a bare `::1` is refused).
    var request =
      "GET \(path) HTTP/1.1\r\nHost: \(IPText.authorityHost(host)):\(port)\r\nConnection: close\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    request += "\r\n"
    let bytes = Array(request.utf8)
    guard
      bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) })
        == bytes.count
    else { return .failure(ProbeError(message: "send: \(errnoText())")) }
    var answer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    // `timeout` bounds the whole answer, not each read: a peer sending a byte at a time must not
    // keep a health check running.
    let deadline = ConfigWatcher.nowMs() + Int64(timeout * 1000)
    while answer.count < 1 << 20 {
      var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let left = deadline - ConfigWatcher.nowMs()
      guard left > 0, poll(&p, 1, Int32(min(left, Int64(Int32.max)))) > 0 else {
        return .failure(ProbeError(message: "no complete answer within \(timeout) s"))
      }
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n == 0 { break }
      guard n > 0 else { return .failure(ProbeError(message: "read: \(errnoText())")) }
      answer += chunk[0..<n]
    }
    let text = String(decoding: answer, as: UTF8.self)
    // "\r\n" is one Character in Swift: split on the string.
    let statusLine = text.range(of: "\r\n").map { text[..<$0.lowerBound] } ?? Substring(text)
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
      return .failure(ProbeError(message: "not an HTTP answer"))
    }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return .success((status, "\(statusLine)\n\(body)"))
  }

  func errnoText() -> String { String(cString: strerror(errno)) }
}
