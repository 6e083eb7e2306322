import XCTest

@testable import HTTP1

/// The caller's framing is computed from the upstream head, never copied; ambiguous heads are refused.
final class UpstreamResponseHeadTests: XCTestCase {
  /// Feeds `lines` (CRLF added) and returns the step after the blank line.
  func read(_ lines: [String], method: String = "GET") -> (
    UpstreamHeadReader, UpstreamHeadReader.Step
  ) {
    var reader = UpstreamHeadReader(requestMethod: method)
    var last = UpstreamHeadReader.Step.more
    for line in lines + [""] {
      let bytes = Array((line + "\r\n").utf8)
      last = bytes.withUnsafeBytes { reader.take(line: $0) }
      if last != .more && line != "" { XCTFail("stopped early at \(line)") }
    }
    return (reader, last)
  }

  func testLengthIsRead() {
    let (r, step) = read(["HTTP/1.1 200 OK", "Content-Length: 5", "X-A:  b  "])
    XCTAssertEqual(step, .complete)
    XCTAssertEqual(r.status, 200)
    XCTAssertEqual(r.framing, .length(5))
    XCTAssertEqual(r.headers.last, HeaderField(name: "X-A", value: "b"))
  }

  func testEqualRepeatedLengthsAreOne() {
    XCTAssertEqual(
      read(["HTTP/1.1 200 OK", "Content-Length: 5, 5", "content-length: 5"]).0.framing, .length(5))
  }

  func testChunkedOrCloseDelimitedIsUnknown() {
    XCTAssertEqual(read(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked"]).0.framing, .unknown)
    XCTAssertEqual(read(["HTTP/1.0 200 OK"]).0.framing, .unknown)
    XCTAssertEqual(read(["HTTP/2 200"]).0.framing, .unknown)
  }

  func testAmbiguousFramingIsInvalid() {
    let cases: [[String]] = [
      ["HTTP/1.1 200 OK", "Content-Length: 5", "Transfer-Encoding: chunked"],
      ["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Content-Length: 5"],
      ["HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 6"],
      ["HTTP/1.1 200 OK", "Content-Length: 5, 6"],
      ["HTTP/1.1 200 OK", "Content-Length: +5"],
      ["HTTP/1.1 200 OK", "Content-Length: 0x5"],
      ["HTTP/1.1 200 OK", "Content-Length: 99999999999999999999"],
      ["HTTP/1.1 200 OK", "Content-Length:"],
    ]
    for lines in cases {
      guard case .invalid = read(lines).1 else {
        XCTFail("accepted \(lines)")
        continue
      }
    }
  }

  func testUnrequestedSwitchingProtocolsIsInvalid() {
    guard case .invalid(let why) = read(["HTTP/1.1 101 Switching Protocols", "Upgrade: x"]).1 else {
      return XCTFail("101 accepted")
    }
    XCTAssertTrue(why.contains("101"))
  }

  func testInterimHeadsAreSkipped() {
    var reader = UpstreamHeadReader(requestMethod: "POST")
    var steps: [UpstreamHeadReader.Step] = []
    for line in [
      "HTTP/1.1 100 Continue", "", "HTTP/1.1 103 Early Hints", "Link: </a>", "",
      "HTTP/1.1 201 Created", "Content-Length: 2", "",
    ] {
      let bytes = Array((line + "\r\n").utf8)
      steps.append(bytes.withUnsafeBytes { reader.take(line: $0) })
    }
    XCTAssertEqual(steps.filter { $0 == .interim }.count, 2)
    XCTAssertEqual(steps.last, .complete)
    XCTAssertEqual(reader.status, 201)
    XCTAssertEqual(reader.headers, [HeaderField(name: "Content-Length", value: "2")])
  }

  func testBodylessResponsesHaveNoBodyWhateverTheHeadersSay() {
    XCTAssertEqual(
      read(["HTTP/1.1 200 OK", "Content-Length: 9"], method: "HEAD").0.framing, .none(advertised: 9)
    )
    XCTAssertEqual(
      read(["HTTP/1.1 304 Not Modified", "Content-Length: 9"]).0.framing, .none(advertised: 9))
    XCTAssertEqual(
      read(["HTTP/1.1 204 No Content", "Content-Length: 9"]).0.framing, .none(advertised: nil))
    XCTAssertEqual(
      read(["HTTP/1.1 204 No Content", "Transfer-Encoding: chunked"]).0.framing,
      .none(advertised: nil))
  }

  func testBadStatusLinesAreInvalid() {
    for line in [
      "HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/1.1 600 X", "HTTP/1.1 abc", "HTTP/1.1",
    ] {
      guard case .invalid = read([line]).1 else {
        XCTFail("accepted \(line)")
        continue
      }
    }
  }

  func testFieldNameComparisonFoldsOnlyASCIICase() {
    XCTAssertTrue(fieldNameIs("Content-LENGTH", "content-length"))
    XCTAssertFalse(fieldNameIs("Content-Lengthx", "content-length"))
    XCTAssertFalse(fieldNameIs("Content_Length", "content-length"))
  }
}

extension UpstreamResponseHeadTests {
  /// Only the first line of a head is a status line: a field that happens to start with `HTTP/`
  /// must not restart the head and drop the fields before it.
  func testStatusLineOnlyAtTheStartOfAHead() {
    let (r, step) = read(["HTTP/1.1 200 OK", "Content-Length: 5", "HTTP/1.1 204 No Content"])
    XCTAssertEqual(step, .complete)
    XCTAssertEqual(r.status, 200)
    XCTAssertEqual(r.framing, .length(5))
  }

  func testHeadNotStartingWithAStatusLineIsInvalid() {
    guard case .invalid = read(["Content-Length: 5", "HTTP/1.1 200 OK"]).1 else {
      return XCTFail("accepted a head without a status line first")
    }
  }
}
