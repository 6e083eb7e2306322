import XCTest

@testable import HTTP1

final class RequestHeadParserTests: XCTestCase {
  // MARK: - The vector table (design notes, "The inbound HTTP/1.1 parser")

  func testContentLengthAndTransferEncodingTogether() {
    assertRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "content-length and transfer-encoding together")
    assertRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400,
      "content-length and transfer-encoding together")
  }

  func testTwoContentLengthHeaders() {
    for (a, b) in [("4", "4"), ("4", "5"), ("0", "0")] {
      assertRejected(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(a)\r\nContent-Length: \(b)\r\n\r\n", 400,
        "multiple content-length headers")
    }
    assertRejected(
      "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 4\r\nCONTENT-LENGTH: 4\r\n\r\n", 400)
  }

  func testMalformedContentLength() {
    for value in [
      "+4", "-1", "4 4", "4,4", "4, 4", "", "0x10", "4a", "18446744073709551616",
      "99999999999999999999999", "１",
    ] {
      assertRejected(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(value)\r\n\r\n", 400,
        "invalid content-length")
    }
  }

  func testValidContentLength() {
    let cases: [(String, UInt64)] = [
      ("0", 0), ("4", 4), ("0004", 4), (" \t7\t ", 7),
      ("18446744073709551615", UInt64.max),
    ]
    for (value, n) in cases {
      let head = assertAccepted("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\(value)\r\n\r\n")
      XCTAssertEqual(head?.framing, .contentLength(n), value)
    }
  }

  func testTransferEncodingOtherThanChunked() {
    for value in ["chunked, identity", "gzip, chunked", "xchunked", "identity", "chunked;q=1", ""] {
      assertRejected(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \(value)\r\n\r\n", 501,
        "unsupported transfer-encoding")
    }
    assertRejected(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      400, "multiple transfer-encoding headers")
    assertRejected(
      "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "transfer-encoding in an http/1.0 request")
  }

  func testChunkedAccepted() {
    for value in ["chunked", "Chunked", "CHUNKED", " chunked\t"] {
      let head = assertAccepted("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\(value)\r\n\r\n")
      XCTAssertEqual(head?.framing, .chunked, value)
    }
  }

  func testWhitespaceBetweenNameAndColon() {
    for line in ["Host : a", "Host\t: a", "Content-Length : 4", "Transfer-Encoding  : chunked"] {
      assertRejected(
        "GET / HTTP/1.1\r\nHost: a\r\n\(line)\r\n\r\n", 400,
        "whitespace between header name and colon")
    }
  }

  func testObsFold() {
    assertRejected(
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400,
      "obs-fold or whitespace before a header field")
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", 400)
    assertRejected("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400)
  }

  func testBareLineEndings() {
    assertRejected("GET / HTTP/1.1\nHost: a\n\n", 400, "bare lf in request head")
    assertRejected("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare lf in request head")
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare lf in request head")
    assertRejected("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "bare cr in request head")
    assertRejected("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare cr in request head")
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400, "bare cr in request head")
    assertRejected("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare lf in request head")
    assertRejected("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare cr in request head")
  }

  func testHeaderNameWithNonTokenCharacters() {
    for name in ["X(y)", "X y", "\"x\"", "X/y", "X[y]", "X@y", "X{y}", "X=y", "X\u{7F}y", "Xé"] {
      assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\(name): v\r\n\r\n", 400)
    }
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400, "empty header name")
    assertRejected(
      "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400, "header field without colon")
  }

  func testControlCharactersInValues() {
    for control: UInt8 in [0x00, 0x01, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F] {
      var bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX-A: a".utf8)
      bytes.append(control)
      bytes += Array("b\r\n\r\n".utf8)
      assertRejected(bytes: bytes, 400, "invalid character in header value")
    }
    // CR and LF inside a value are bare line endings.
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400)
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\n\r\n", 400)
  }

  func testNonASCIIValuesMustBeUTF8() {
    let head = assertAccepted("GET / HTTP/1.1\r\nHost: a\r\nX-Name: café ☕ 𝄞\r\n\r\n")
    XCTAssertEqual(head?.headers.last?.value, "café ☕ 𝄞")
    for invalid: [UInt8] in [
      [0xFF], [0xC3], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80],
    ] {
      var bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nX-A: a".utf8)
      bytes += invalid
      bytes += Array("\r\n\r\n".utf8)
      assertRejected(bytes: bytes, 400, "header value is not valid utf-8")
    }
  }

  func testAbsoluteFormAuthorityWinsOverHost() {
    let head = assertAccepted(
      "GET http://Upstream.Example:8080/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
    XCTAssertEqual(
      head?.target,
      .absolute(
        scheme: "http", authority: Authority(host: "upstream.example", port: 8080),
        pathAndQuery: "/p?q=1"))
    XCTAssertEqual(head?.authority, Authority(host: "upstream.example", port: 8080))
    XCTAssertEqual(head?.pathAndQuery, "/p?q=1")
    XCTAssertEqual(head?.headers, [HeaderField(name: "Host", value: "other.example")])
  }

  func testAbsoluteFormVariants() {
    let noHost = assertAccepted("GET HTTPS://h.example HTTP/1.1\r\n\r\n")
    XCTAssertEqual(
      noHost?.target,
      .absolute(
        scheme: "https", authority: Authority(host: "h.example", port: nil), pathAndQuery: "/"))
    let queryOnly = assertAccepted("GET http://h.example?x=1 HTTP/1.1\r\nHost: h.example\r\n\r\n")
    XCTAssertEqual(queryOnly?.pathAndQuery, "/?x=1")
    let v6 = assertAccepted("GET http://[::1]:8443/x HTTP/1.1\r\n\r\n")
    XCTAssertEqual(v6?.authority, Authority(host: "::1", port: 8443, isIPv6: true))

    assertRejected(
      "GET http://user:pw@h.example/ HTTP/1.1\r\n\r\n", 400, "userinfo in request target")
    assertRejected("GET http://@h.example/ HTTP/1.1\r\n\r\n", 400, "userinfo in request target")
    assertRejected("GET http:///x HTTP/1.1\r\n\r\n", 400, "invalid authority in request target")
    assertRejected("GET http://h.example:0/ HTTP/1.1\r\n\r\n", 400)
    assertRejected("GET http://h.example:x/ HTTP/1.1\r\n\r\n", 400)
    assertRejected("GET http://h%2eexample/ HTTP/1.1\r\n\r\n", 400)
    assertRejected("GET ftp://h.example/ HTTP/1.1\r\n\r\n", 400, "invalid request target")
    assertRejected("GET http:/h.example/ HTTP/1.1\r\n\r\n", 400)
    assertRejected("GET http://h.example/a#b HTTP/1.1\r\n\r\n", 400, "fragment in request target")
    assertRejected("GET http://h.example#b HTTP/1.1\r\n\r\n", 400)
    assertRejected("GET http://h.example/../x HTTP/1.1\r\n\r\n", 400, "path contains dot-segments")
    // Even an invalid Host is refused when the target's authority wins.
    assertRejected(
      "GET http://h.example/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid host header")
  }

  func testConnectAuthorityFormOnly() {
    let text = "CONNECT Upstream.Example:443 HTTP/1.1\r\nHost: upstream.example:443\r\n\r\n"
    let tunnel: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
    let bytes = Array(text.utf8) + tunnel
    guard case .complete(let head, let consumed) = parseHeadAllWays(bytes) else {
      return XCTFail("connect not accepted")
    }
    XCTAssertEqual(consumed, text.utf8.count, "parsing stops after the head")
    XCTAssertEqual(head.method, "CONNECT")
    XCTAssertEqual(head.target, .authority(Authority(host: "upstream.example", port: 443)))
    XCTAssertEqual(head.authority, Authority(host: "upstream.example", port: 443))
    XCTAssertEqual(head.framing, .none)
    XCTAssertEqual(head.pathAndQuery, "")

    let v6 = assertAccepted("CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n")
    XCTAssertEqual(v6?.target, .authority(Authority(host: "2001:db8::1", port: 443, isIPv6: true)))
    assertAccepted(
      "CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\nContent-Length: 0\r\n\r\n")

    let reason = "connect requires an authority-form target with a port"
    for target in [
      "h.example", "h.example:", "http://h.example:443/", "/", "*", "user@h.example:443",
      "h.example:443/", "[::1]",
    ] {
      assertRejected("CONNECT \(target) HTTP/1.1\r\nHost: h.example\r\n\r\n", 400, reason)
    }
    assertRejected(
      "CONNECT h.example:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400,
      "connect request with a body")
    assertRejected(
      "CONNECT h.example:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "connect request with a body")
    // Authority-form is for CONNECT only.
    assertRejected("GET h.example:443 HTTP/1.1\r\nHost: h.example\r\n\r\n", 400)
  }

  func testHTTP10WithoutHost() {
    let absolute = assertAccepted("GET http://h.example/x HTTP/1.0\r\n\r\n")
    XCTAssertEqual(absolute?.version, .http10)
    XCTAssertEqual(absolute?.authority, Authority(host: "h.example", port: nil))
    XCTAssertEqual(absolute?.keepAlive, false)
    let origin = assertAccepted("GET /x HTTP/1.0\r\n\r\n")
    XCTAssertNil(origin?.authority)
    XCTAssertEqual(origin?.target, .origin(pathAndQuery: "/x"))
    assertRejected("GET /x HTTP/1.1\r\n\r\n", 400, "missing host header")
    assertRejected("OPTIONS * HTTP/1.1\r\n\r\n", 400, "missing host header")
  }

  // MARK: - Request line

  func testOriginForm() throws {
    let head = try XCTUnwrap(
      assertAccepted("GET /a/b?c=d&e=%2F HTTP/1.1\r\nHost: Example.COM:8443\r\nAccept: */*\r\n\r\n")
    )
    XCTAssertEqual(head.method, "GET")
    XCTAssertEqual(head.target, .origin(pathAndQuery: "/a/b?c=d&e=%2F"))
    XCTAssertEqual(head.version, .http11)
    XCTAssertEqual(head.authority, Authority(host: "example.com", port: 8443))
    XCTAssertEqual(head.framing, .none)
    XCTAssertTrue(head.keepAlive)
    XCTAssertFalse(head.expectContinue)
    XCTAssertEqual(
      head.headers,
      [
        HeaderField(name: "Host", value: "Example.COM:8443"),
        HeaderField(name: "Accept", value: "*/*"),
      ])
  }

  func testAsteriskForm() {
    let head = assertAccepted("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.target, .asterisk)
    XCTAssertEqual(head?.pathAndQuery, "*")
    assertRejected(
      "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "asterisk-form target is only allowed for options")
    assertRejected("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400)
  }

  func testMethod() {
    let head = assertAccepted("M-SEARCH!#$%&'*+.^_`|~9 / HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.method, "M-SEARCH!#$%&'*+.^_`|~9")
    for line in ["G(T / HTTP/1.1", " / HTTP/1.1", "GET", "GET\t/ HTTP/1.1", "GÉT / HTTP/1.1"] {
      assertRejected("\(line)\r\nHost: a\r\n\r\n", 400, "invalid method")
    }
  }

  func testRequestLineShape() {
    for line in [
      "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /  HTTP/1.1", "GET /a b HTTP/1.1", "GET /",
      "GET / ", "GET / HTTP/1.1\t",
    ] {
      assertRejected("\(line)\r\nHost: a\r\n\r\n", 400)
    }
  }

  func testVersions() {
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
      assertRejected(
        "GET / \(version)\r\nHost: a\r\n\r\n", 505, "http version not supported")
    }
    for version in [
      "http/1.1", "HTTP/11", "HTTP/1", "HTTP/1.1x", "HTTP/1.10", "HTTPS/1.1", "HTTP/a.b",
      "HTTP 1.1",
    ] {
      assertRejected("GET / \(version)\r\nHost: a\r\n\r\n", 400)
    }
  }

  func testTargetCharacters() {
    for target in [
      "/a#frag", "/a\"b", "/a<b", "/a>b", "/a\\b", "/a^b", "/a`b", "/a{b", "/a|b", "/a}b", "/a[b",
      "/%", "/%4", "/%zz", "/%4g", "/a?b#c",
    ] {
      assertRejected("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    }
    var bytes = Array("GET /a".utf8)
    bytes.append(0x01)
    bytes += Array(" HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
    assertRejected(bytes: bytes, 400, "invalid character in request target")
    let head = assertAccepted(
      "GET /azAZ09-._~!$&'()*+,;=:@/%20%ff?q=/?:@!$'()*+,;=%7E HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.pathAndQuery, "/azAZ09-._~!$&'()*+,;=:@/%20%ff?q=/?:@!$'()*+,;=%7E")
  }

  /// Raw bytes >= 0x80 (curl sends `http://h/café` as raw UTF-8) are accepted in the path and
  /// query, as nginx and squid do, and carried percent-encoded; never in the authority.
  func testRawHighBytesInTargetArePercentEncoded() {
    var head = assertAccepted("GET /café?q=ü HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.pathAndQuery, "/caf%C3%A9?q=%C3%BC")
    head = assertAccepted("GET http://a.example/caf\u{e9}/x HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.pathAndQuery, "/caf%C3%A9/x")
    head = assertAccepted("GET http://a.example?\u{2603} HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.pathAndQuery, "/?%E2%98%83")
    // Any byte >= 0x80, not only valid UTF-8.
    var bytes = Array("GET /a".utf8)
    bytes += [0xFF, 0x80]
    bytes += Array(" HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
    if case .complete(let h, _) = parseHead(bytes, plan: [bytes.count]) {
      XCTAssertEqual(h.pathAndQuery, "/a%FF%80")
    } else {
      XCTFail("raw 0xFF 0x80 refused")
    }
    // A byte >= 0x80 next to a dot does not hide a dot-segment, nor make one.
    assertAccepted("GET /a/..\u{e9}/b HTTP/1.1\r\nHost: a\r\n\r\n")
    // Never in the authority; control bytes, space and DEL stay refused.
    assertRejected("GET http://caf\u{e9}.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    assertRejected("GET / HTTP/1.1\r\nHost: caf\u{e9}.example\r\n\r\n", 400)
    assertRejected("CONNECT caf\u{e9}.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400)
    for bad: UInt8 in [0x00, 0x01, 0x7F] {
      var b = Array("GET /caf\u{e9}".utf8)
      b.append(bad)
      b += Array(" HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
      assertRejected(bytes: b, 400, "invalid character in request target")
    }
  }

  func testDotSegments() {
    for target in [
      "/..", "/.", "/a/..", "/a/.", "/a/../b", "/a/./b", "/a/%2e%2e/b", "/a/%2E%2e", "/a/.%2e/",
      "/a/%2e/b", "/a/..%2fb", "/a/..%2Fb", "/a/..%5cb", "/a/%2e%2e%5Cb", "/../x?y", "/a/..?x",
    ] {
      assertRejected(
        "GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path contains dot-segments")
    }
    for target in [
      "/a/.../b", "/a/..b/c", "/a/.b", "/a/b.", "/a..", "/a%2fb", "/x?p=/../y", "/x?..", "//a//b",
      "/.well-known/x",
    ] {
      assertAccepted("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n")
    }
  }

  func testLeadingEmptyLines() {
    let head = assertAccepted("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    XCTAssertEqual(head?.method, "GET")
    assertRejected(
      String(repeating: "\r\n", count: RequestHeadParser.maxLeadingEmptyLines + 1)
        + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "too many empty lines before the request line")
  }

  // MARK: - Limits

  func testRequestLineLimit() {
    var limits = HTTPLimits()
    limits.maxRequestLine = 64
    let prefix = "GET /"
    let suffix = " HTTP/1.1"
    let fits = prefix + String(repeating: "a", count: 64 - prefix.count - suffix.count) + suffix
    XCTAssertEqual(fits.utf8.count, 64)
    assertAccepted(fits + "\r\nHost: a\r\n\r\n", limits: limits)
    let tooLong = prefix + String(repeating: "a", count: 65 - prefix.count - suffix.count) + suffix
    assertRejected(
      tooLong + "\r\nHost: a\r\n\r\n", 414, "request line exceeds 64 bytes", limits: limits)
    // Incomplete, but already too long: refused without waiting for the rest.
    assertRejected(prefix + String(repeating: "a", count: 100), 414, limits: limits)
    // The default limit.
    assertRejected("GET /" + String(repeating: "a", count: 8 * 1024), 414)
  }

  func testHeaderBytesLimit() {
    var limits = HTTPLimits()
    limits.maxHeaderBytes = 100
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX: "
    let end = "\r\n\r\n"
    let fits = start + String(repeating: "v", count: 100 - start.utf8.count - end.utf8.count) + end
    XCTAssertEqual(fits.utf8.count, 100)
    assertAccepted(fits, limits: limits)
    let tooBig =
      start + String(repeating: "v", count: 101 - start.utf8.count - end.utf8.count) + end
    assertRejected(tooBig, 431, "request head exceeds 100 bytes", limits: limits)
    // Incomplete, but already too big.
    assertRejected(start + String(repeating: "v", count: 200), 431, limits: limits)
    // Leading empty lines do not count.
    assertAccepted("\r\n" + fits, limits: limits)
    // Default.
    assertRejected(
      "GET / HTTP/1.1\r\nHost: a\r\n"
        + String(repeating: "X-Filler: 0123456789012345678901234567890\r\n", count: 10)
        + String(repeating: "X-Big: \(String(repeating: "b", count: 8000))\r\n", count: 9), 431,
      "request head exceeds 65536 bytes")
  }

  func testHeaderCountLimit() {
    var limits = HTTPLimits()
    limits.maxHeaderCount = 5
    let fields = (1...4).map { "X-\($0): v\r\n" }.joined()
    let head = assertAccepted("GET / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n", limits: limits)
    XCTAssertEqual(head?.headers.count, 5)
    assertRejected(
      "GET / HTTP/1.1\r\nHost: a\r\n\(fields)X-5: v\r\n\r\n", 431, "more than 5 header fields",
      limits: limits)
    let many = (1...200).map { "X-\($0): v\r\n" }.joined()
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\n\(many)\r\n", 431)
  }

  // MARK: - Fields with meaning

  func testHost() {
    let head = assertAccepted("GET / HTTP/1.1\r\nhOsT:  UPPER.Example.COM.:8080 \r\n\r\n")
    XCTAssertEqual(head?.authority, Authority(host: "upper.example.com", port: 8080))
    XCTAssertEqual(head?.headers, [HeaderField(name: "hOsT", value: "UPPER.Example.COM.:8080")])
    let v6 = assertAccepted("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n")
    XCTAssertEqual(v6?.authority, Authority(host: "::1", port: 8443, isIPv6: true))
    XCTAssertEqual(v6?.authority?.description, "[::1]:8443")
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple host headers")
    assertRejected("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "multiple host headers")
    for value in [
      "", "a b", "user@a", "a:0", "a:65536", "a:", "a/b", "[::1", "2130706433", "a_b%41",
    ] {
      assertRejected("GET / HTTP/1.1\r\nHost: \(value)\r\n\r\n", 400, "invalid host header")
    }
  }

  func testConnection() {
    let cases: [(String, String, Bool)] = [
      ("HTTP/1.1", "", true),
      ("HTTP/1.1", "Connection: close\r\n", false),
      ("HTTP/1.1", "Connection: Keep-Alive, CLOSE\r\n", false),
      ("HTTP/1.1", "Connection: upgrade\r\nConnection: x, close ,y\r\n", false),
      ("HTTP/1.1", "Connection: closed, xclose\r\n", true),
      ("HTTP/1.1", "Connection: keep-alive\r\n", true),
      ("HTTP/1.0", "", false),
      ("HTTP/1.0", "Connection: keep-alive\r\n", true),
      ("HTTP/1.0", "Connection: te,\tKeep-Alive\r\n", true),
      ("HTTP/1.0", "Connection: keep-alive, close\r\n", false),
    ]
    for (version, field, keepAlive) in cases {
      let head = assertAccepted("GET / \(version)\r\nHost: a\r\n\(field)\r\n")
      XCTAssertEqual(head?.keepAlive, keepAlive, "\(version) \(field)")
    }
  }

  func testExpect() {
    let head = assertAccepted(
      "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
    XCTAssertEqual(head?.expectContinue, true)
    XCTAssertEqual(head?.framing, .contentLength(3))
    // RFC 9110 §10.1.1: ignored in HTTP/1.0.
    let old = assertAccepted("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    XCTAssertEqual(old?.expectContinue, false)
    for value in ["", "200-ok", "100-continue, foo", "100-continuex"] {
      assertRejected(
        "PUT / HTTP/1.1\r\nHost: a\r\nExpect: \(value)\r\n\r\n", 417, "unsupported expectation")
    }
    // A syntax error anywhere in the head outranks the expectation.
    assertRejected("PUT / HTTP/1.1\r\nHost: a\r\nExpect: nope\r\nBad Name: x\r\n\r\n", 400)
  }

  func testFieldsKeptInOrderWithOriginalCase() {
    let head = assertAccepted(
      "POST /x HTTP/1.1\r\nHOST: a\r\nx-lower: 1\r\nX-Dup: a\r\nX-Dup: b\r\nX-Empty:\r\n"
        + "X-Spaces: \t inner  space \t\r\nX-Tab: a\tb\r\n\r\n")
    XCTAssertEqual(
      head?.headers,
      [
        HeaderField(name: "HOST", value: "a"), HeaderField(name: "x-lower", value: "1"),
        HeaderField(name: "X-Dup", value: "a"), HeaderField(name: "X-Dup", value: "b"),
        HeaderField(name: "X-Empty", value: ""),
        HeaderField(name: "X-Spaces", value: "inner  space"),
        HeaderField(name: "X-Tab", value: "a\tb"),
      ])
  }

  // MARK: - Incremental use

  func testNeedMore() {
    var parser = RequestHeadParser()
    let text = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
    for n in 0..<text.count {
      let result = text.withUnsafeBytes {
        parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]))
      }
      XCTAssertEqual(result, .needMore, "prefix of \(n) bytes")
    }
    let result = text.withUnsafeBytes { parser.parse($0) }
    guard case .complete(_, let consumed) = result else { return XCTFail("\(result)") }
    XCTAssertEqual(consumed, text.count)
    // The outcome is kept until reset.
    XCTAssertEqual(text.withUnsafeBytes { parser.parse($0) }, result)
    parser.reset()
    XCTAssertEqual(
      text.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<3])) }, .needMore)
  }

  func testFailureIsSticky() {
    var parser = RequestHeadParser()
    let bad = Array("GET / HTTP/1.1\nHost: a\r\n\r\n".utf8)
    let first = bad.withUnsafeBytes { parser.parse($0) }
    guard case .failed = first else { return XCTFail("\(first)") }
    XCTAssertEqual(bad.withUnsafeBytes { parser.parse($0) }, first)
    parser.reset()
    let good = Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
    guard case .complete = good.withUnsafeBytes({ parser.parse($0) }) else { return XCTFail() }
  }

  func testPipelinedRequests() throws {
    let first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    let second = "POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\n"
    let third = "GET /three HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n"
    let bytes = Array((first + second + "hello" + third).utf8)

    var parser = RequestHeadParser()
    var offset = 0
    var paths: [String] = []
    while offset < bytes.count {
      let result = bytes.withUnsafeBytes {
        parser.parse(UnsafeRawBufferPointer(rebasing: $0[offset...]))
      }
      guard case .complete(let head, let consumed) = result else { return XCTFail("\(result)") }
      paths.append(head.pathAndQuery)
      offset += consumed
      var decoder = BodyDecoder(framing: head.framing, maxBody: 100)
      var body: [UInt8] = []
      let bodyResult = bytes.withUnsafeBytes { raw in
        decoder.decode(UnsafeRawBufferPointer(rebasing: raw[offset...])) { body += $0 }
      }
      guard case .done(let bodyConsumed) = bodyResult else { return XCTFail("\(bodyResult)") }
      if head.pathAndQuery == "/two" {
        XCTAssertEqual(String(decoding: body, as: UTF8.self), "hello")
      }
      offset += bodyConsumed
      parser.reset()
    }
    XCTAssertEqual(paths, ["/one", "/two", "/three"])
    XCTAssertEqual(offset, bytes.count)
  }

  func testPipelinedHeadsSplitAnyWay() {
    let first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    let bytes = Array((first + "GET /two HTTP/1.1\r\nHost: a\r\n\r\n").utf8)
    for plan in splitPlans(count: bytes.count) {
      guard case .complete(let head, let consumed) = parseHead(bytes, plan: plan) else {
        return XCTFail("\(plan)")
      }
      XCTAssertEqual(head.pathAndQuery, "/one")
      XCTAssertEqual(consumed, first.utf8.count)
    }
  }

  func testScanIsLinearWhenFedByteByByte() {
    // 60 KiB of fields, one byte per call: a parser that rescans from the start would do ~2e9
    // byte steps here.
    var text = "GET / HTTP/1.1\r\nHost: a\r\n"
    for i in 0..<100 { text += "X-\(i): \(String(repeating: "v", count: 600))\r\n" }
    text += "\r\n"
    let bytes = Array(text.utf8)
    let start = ContinuousClock.now
    guard
      case .complete(let head, _) = parseHead(bytes, plan: Array(repeating: 1, count: bytes.count))
    else { return XCTFail() }
    XCTAssertEqual(head.headers.count, 101)
    XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
  }

  func testShorterBufferRestarts() {
    var parser = RequestHeadParser()
    let a = Array("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x".utf8)
    XCTAssertEqual(a.withUnsafeBytes { parser.parse($0) }, .needMore)
    let b = Array("GET /b HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
    guard case .complete(let head, _) = b.withUnsafeBytes({ parser.parse($0) }) else {
      return XCTFail()
    }
    XCTAssertEqual(head.pathAndQuery, "/b")
  }
}
