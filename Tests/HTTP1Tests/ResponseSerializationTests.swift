import XCTest

@testable import HTTP1

final class ResponseSerializationTests: XCTestCase {
  func testResponseHead() {
    let bytes = serializeResponseHead(
      status: 407,
      headers: [
        HeaderField(name: "Proxy-Authenticate", value: "Basic realm=\"credproxy\""),
        HeaderField(name: "Content-Length", value: "0"),
      ])
    XCTAssertEqual(
      String(decoding: bytes, as: UTF8.self),
      "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"credproxy\"\r\n"
        + "Content-Length: 0\r\n\r\n")
  }

  func testCustomReasonAndNoFields() {
    XCTAssertEqual(
      String(
        decoding: serializeResponseHead(status: 200, reason: "Fine", headers: []), as: UTF8.self),
      "HTTP/1.1 200 Fine\r\n\r\n")
    XCTAssertEqual(
      String(decoding: serializeResponseHead(status: 299, headers: []), as: UTF8.self),
      "HTTP/1.1 299 \r\n\r\n")
  }

  func testNoResponseSplitting() {
    let bytes = serializeResponseHead(
      status: 502, reason: "Bad\r\nX: y",
      headers: [HeaderField(name: "X-A", value: "v\r\nSet-Cookie: evil\u{0}")])
    XCTAssertEqual(
      String(decoding: bytes, as: UTF8.self),
      "HTTP/1.1 502 Bad  X: y\r\nX-A: v  Set-Cookie: evil \r\n\r\n")
  }

  func testNonASCIIValueRoundTrips() {
    let bytes = serializeResponseHead(status: 200, headers: [HeaderField(name: "X", value: "café")])
    XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "HTTP/1.1 200 OK\r\nX: café\r\n\r\n")
  }

  func testReasonPhrases() {
    let expected: [Int: String] = [
      100: "Continue", 200: "OK", 204: "No Content", 301: "Moved Permanently", 304: "Not Modified",
      400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
      407: "Proxy Authentication Required", 408: "Request Timeout", 411: "Length Required",
      413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
      429: "Too Many Requests", 431: "Request Header Fields Too Large",
      500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
      503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    ]
    for (status, phrase) in expected { XCTAssertEqual(reasonPhrase(status), phrase, "\(status)") }
    XCTAssertEqual(reasonPhrase(599), "")
  }

  func testChunkFraming() {
    let cases: [(Int, String)] = [
      (1, "1\r\n"), (9, "9\r\n"), (10, "a\r\n"), (15, "f\r\n"), (16, "10\r\n"), (255, "ff\r\n"),
      (4096, "1000\r\n"), (65535, "ffff\r\n"), (Int.max, "7fffffffffffffff\r\n"),
    ]
    for (n, text) in cases { XCTAssertEqual(String(decoding: chunkHeader(n), as: UTF8.self), text) }
    XCTAssertEqual(chunkHeader(0), [])
    XCTAssertEqual(chunkHeader(-1), [])
    XCTAssertEqual(String(decoding: lastChunk, as: UTF8.self), "0\r\n\r\n")
  }
}
