import XCTest

@testable import HTTP1

final class BodyDecoderTests: XCTestCase {
  func text(_ outcome: DecodeOutcome) -> String { String(decoding: outcome.body, as: UTF8.self) }

  // MARK: - No body, Content-Length

  func testNoBody() {
    var decoder = BodyDecoder(framing: .none, maxBody: 0)
    XCTAssertTrue(decoder.isComplete)
    let next = Array("GET / HTTP/1.1\r\n".utf8)
    let result = next.withUnsafeBytes { decoder.decode($0) { _ in XCTFail("no body") } }
    XCTAssertEqual(result, .done(consumed: 0))
    XCTAssertEqual(decoder.bodyBytesSoFar, 0)
  }

  func testContentLength() {
    let outcome = decodeBodyAllWays(Array("hello worldGET /".utf8), framing: .contentLength(11))
    XCTAssertEqual(outcome.result, .done(consumed: 0))
    XCTAssertEqual(text(outcome), "hello world")
    XCTAssertEqual(outcome.consumed, 11)
  }

  func testContentLengthIncomplete() {
    var decoder = BodyDecoder(framing: .contentLength(10), maxBody: 10)
    var body: [UInt8] = []
    let part = Array("abcd".utf8)
    XCTAssertEqual(
      part.withUnsafeBytes { decoder.decode($0) { body += $0 } }, .progress(consumed: 4))
    XCTAssertFalse(decoder.isComplete)
    XCTAssertEqual(decoder.bodyBytesSoFar, 4)
    let rest = Array("efghijNEXT".utf8)
    XCTAssertEqual(rest.withUnsafeBytes { decoder.decode($0) { body += $0 } }, .done(consumed: 6))
    XCTAssertTrue(decoder.isComplete)
    XCTAssertEqual(String(decoding: body, as: UTF8.self), "abcdefghij")
    XCTAssertEqual(
      rest.withUnsafeBytes { decoder.decode($0) { _ in XCTFail() } }, .done(consumed: 0))
  }

  func testContentLengthZero() {
    var decoder = BodyDecoder(framing: .contentLength(0), maxBody: 0)
    XCTAssertTrue(decoder.isComplete)
    let result = [UInt8]().withUnsafeBytes { decoder.decode($0) { _ in XCTFail() } }
    XCTAssertEqual(result, .done(consumed: 0))
  }

  func testContentLengthOverLimit() {
    var decoder = BodyDecoder(framing: .contentLength(11), maxBody: 10)
    let result = Array("x".utf8).withUnsafeBytes { decoder.decode($0) { _ in XCTFail() } }
    XCTAssertEqual(
      result, .failed(HTTPParseError(status: 413, reason: "request body exceeds 10 bytes")))
    XCTAssertFalse(decoder.isComplete)
    // Known before any body byte arrives (e.g. before answering 100-continue).
    var early = BodyDecoder(framing: .contentLength(11), maxBody: 10)
    let empty = [UInt8]().withUnsafeBytes { early.decode($0) { _ in XCTFail() } }
    XCTAssertEqual(
      empty, .failed(HTTPParseError(status: 413, reason: "request body exceeds 10 bytes")))
    // Exactly at the limit is fine.
    let outcome = decodeBodyAllWays(
      Array("0123456789".utf8), framing: .contentLength(10), maxBody: 10)
    XCTAssertEqual(outcome.result, .done(consumed: 0))
    let huge = BodyDecoder(framing: .contentLength(UInt64.max), maxBody: 1 << 30)
    XCTAssertFalse(huge.isComplete)
  }

  // MARK: - Chunked

  func testChunked() {
    let input = Array("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n".utf8)
    let outcome = decodeBodyAllWays(input, framing: .chunked)
    XCTAssertEqual(outcome.result, .done(consumed: 0))
    XCTAssertEqual(text(outcome), "hello world")
    XCTAssertEqual(outcome.consumed, input.count - "GET / HTTP/1.1\r\n".utf8.count)
  }

  func testChunkedIncomplete() {
    for prefix in [
      "", "5", "5\r", "5\r\nhel", "5\r\nhello\r", "5\r\nhello\r\n0\r\n",
      "5\r\nhello\r\n0\r\nX: y\r\n",
    ] {
      let outcome = decodeBodyAllWays(Array(prefix.utf8), framing: .chunked)
      guard case .progress = outcome.result else { return XCTFail("\(prefix): \(outcome)") }
      XCTAssertEqual(outcome.consumed, prefix.utf8.count)
    }
  }

  func testChunkSizes() {
    let cases: [(String, Int)] = [
      ("A", 10), ("a", 10), ("0a", 10), ("00000000000000000000000000000A", 10), ("1F", 31),
    ]
    for (size, n) in cases {
      let data = String(repeating: "x", count: n)
      let outcome = decodeBodyAllWays(
        Array("\(size)\r\n\(data)\r\n0\r\n\r\n".utf8), framing: .chunked)
      XCTAssertEqual(outcome.result, .done(consumed: 0), size)
      XCTAssertEqual(outcome.body.count, n, size)
    }
  }

  func testChunkSizeOverflowAndNonHex() {
    assertBodyRejected("10000000000000000\r\n", 400, "chunk size overflow")
    assertBodyRejected("ffffffffffffffffff\r\n", 400, "chunk size overflow")
    for line in ["g", "-1", "+5", "0x5", " 5", "", "5\t\t", "5 ", "5 x", "\n", "5\n"] {
      assertBodyRejected("\(line)\r\nhello\r\n0\r\n\r\n", 400)
    }
  }

  func testChunkSizeOverBodyLimit() {
    let reason = "request body exceeds 10 bytes"
    assertBodyRejected("b\r\n", maxBody: 10, 413, reason)
    assertBodyRejected("ffffffffffffffff\r\n", maxBody: 10, 413, reason)
    assertBodyRejected("5\r\nhello\r\n6\r\n", maxBody: 10, 413, reason)
    let fits = decodeBodyAllWays(
      Array("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n".utf8), framing: .chunked, maxBody: 10)
    XCTAssertEqual(fits.result, .done(consumed: 0))
    XCTAssertEqual(text(fits), "helloworld")
  }

  func testChunkDataMustEndWithCRLF() {
    assertBodyRejected("5\r\nhelloX\r\n0\r\n\r\n", 400, "chunk data not followed by crlf")
    assertBodyRejected("5\r\nhello\rX0\r\n\r\n", 400, "chunk data not followed by crlf")
    assertBodyRejected("5\r\nhello\n0\r\n\r\n", 400, "chunk data not followed by crlf")
    assertBodyRejected("3\r\nhello\r\n0\r\n\r\n", 400, "chunk data not followed by crlf")
  }

  func testChunkExtensions() {
    for ext in [
      ";a", ";a=b", ";a=b;c", " ;a", "\t; a = b", ";a=\"quoted \\\" value; with\\\\ ; \t\"",
      ";a=\"\"", ";a=\"caf\u{e9}\"", ";a;b;c=d", ";a ;b",
    ] {
      let outcome = decodeBodyAllWays(
        Array("5\(ext)\r\nhello\r\n0\(ext)\r\n\r\n".utf8), framing: .chunked)
      XCTAssertEqual(outcome.result, .done(consumed: 0), ext)
      XCTAssertEqual(text(outcome), "hello", ext)
    }
    for ext in [
      ";", "; ", ";a=", ";a= ", ";=b", ";a b", ";a=b c", ";a=\"unterminated", ";a=\"x\"y", ";a@b",
      ";a=b@", ";a=\"\u{1}\"", ";a=\"x\\\u{1}\"", ";a ", ";a=b ", ";a=\"x\" ", ",a",
    ] {
      assertBodyRejected("5\(ext)\r\nhello\r\n0\r\n\r\n", 400)
    }
  }

  func testChunkSizeLineLimit() {
    let long = ";a=" + String(repeating: "b", count: 4096)
    assertBodyRejected("5\(long)\r\nhello\r\n0\r\n\r\n", 400, "chunk size line too long")
    // Leading zeros count towards the line too.
    assertBodyRejected(
      String(repeating: "0", count: 4097) + "5\r\n", 400, "chunk size line too long")
    let fits = ";a=" + String(repeating: "b", count: 4092)
    let outcome = decodeBodyAllWays(Array("5\(fits)\r\nhello\r\n0\r\n\r\n".utf8), framing: .chunked)
    XCTAssertEqual(outcome.result, .done(consumed: 0))
  }

  func testTrailers() {
    let input = Array(
      "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\tcafé ok \r\nX-Empty:\r\n\r\nNEXT".utf8)
    let outcome = decodeBodyAllWays(input, framing: .chunked)
    XCTAssertEqual(outcome.result, .done(consumed: 0))
    XCTAssertEqual(text(outcome), "hello")
    XCTAssertEqual(outcome.consumed, input.count - 4)
  }

  func testInvalidTrailers() {
    assertBodyRejected("0\r\nX Y: v\r\n\r\n", 400)
    assertBodyRejected("0\r\nX : v\r\n\r\n", 400, "whitespace between trailer name and colon")
    assertBodyRejected(
      "0\r\nX: v\r\n w\r\n\r\n", 400, "obs-fold or whitespace before a trailer field")
    assertBodyRejected("0\r\nX\r\n\r\n", 400)
    assertBodyRejected("0\r\n: v\r\n\r\n", 400)
    assertBodyRejected("0\r\nX: a\u{0}b\r\n\r\n", 400, "invalid character in trailer value")
    assertBodyRejected("0\r\nX: a\u{7F}b\r\n\r\n", 400, "invalid character in trailer value")
    assertBodyRejected("0\r\nX: v\n\r\n", 400)
    assertBodyRejected("0\r\nX: v\r\n\n", 400)
    assertBodyRejected("0\r\n\n", 400)
    assertBodyRejected("0\r\n\rX", 400)
    for invalid: [UInt8] in [
      [0xFF], [0xC3, 0x0D], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
      [0xE2, 0x82],
    ] {
      let bytes = Array("0\r\nX: a".utf8) + invalid + Array("\r\n\r\n".utf8)
      let outcome = decodeBodyAllWays(bytes, framing: .chunked)
      guard case .failed(let error) = outcome.result else { return XCTFail("\(invalid)") }
      XCTAssertEqual(error.status, 400)
    }
    let many = (0...BodyDecoder.maxTrailerFields).map { "X-\($0): v\r\n" }.joined()
    assertBodyRejected("0\r\n\(many)\r\n", 431)
    let big = "X: " + String(repeating: "v", count: BodyDecoder.maxTrailerBytes) + "\r\n"
    assertBodyRejected("0\r\n\(big)\r\n", 431)
  }

  func testFailureIsSticky() {
    var decoder = BodyDecoder(framing: .chunked, maxBody: 100)
    let bad = Array("z\r\n".utf8)
    let first = bad.withUnsafeBytes { decoder.decode($0) { _ in } }
    guard case .failed = first else { return XCTFail("\(first)") }
    let good = Array("5\r\nhello\r\n0\r\n\r\n".utf8)
    XCTAssertEqual(good.withUnsafeBytes { decoder.decode($0) { _ in XCTFail() } }, first)
    XCTAssertFalse(decoder.isComplete)
  }

  func testLargeChunkedBodyRoundTrip() {
    var rng = SplitMix64(seed: 7)
    var expected: [UInt8] = []
    var encoded: [UInt8] = []
    for _ in 0..<50 {
      let n = Int.random(in: 1...3000, using: &rng)
      let chunk = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
      expected += chunk
      encoded += chunkHeader(n) + chunk + [0x0D, 0x0A]
    }
    encoded += lastChunk
    for plan in splitPlans(count: encoded.count, randomPlans: 4).dropFirst(2) + [[encoded.count]] {
      let outcome = decodeBody(
        encoded, framing: .chunked, maxBody: UInt64(expected.count), plan: plan)
      XCTAssertEqual(outcome.result, .done(consumed: 0))
      XCTAssertEqual(outcome.body, expected)
      XCTAssertEqual(outcome.consumed, encoded.count)
    }
  }
}
