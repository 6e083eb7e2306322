import XCTest

@testable import CredproxyCore

final class RESPTests: XCTestCase {
  func testCommandsAreArraysOfBulkStrings() {
    XCTAssertEqual(
      String(decoding: RESP.command(["EVALSHA", "ab", "1", "k é"]), as: UTF8.self),
      "*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$4\r\nk é\r\n")
  }

  func testRepliesByteByByteAndPipelined() throws {
    let wire = Array(
      "+OK\r\n-NOSCRIPT No matching script\r\n:42\r\n$-1\r\n$5\r\nhe\r\no\r\n*2\r\n:0\r\n:7\r\n*-1\r\n*0\r\n"
        .utf8)
    let expected: [RESPValue] = [
      .simple("OK"), .error("NOSCRIPT No matching script"), .integer(42), .bulk(nil),
      .bulk(Array("he\r\no".utf8)), .array([.integer(0), .integer(7)]), .array(nil), .array([]),
    ]
    // Fed one byte at a time: nothing is returned before a reply is complete.
    var reader = RESP.Reader()
    var got: [RESPValue] = []
    for b in wire {
      reader.append([b])
      while let v = try reader.next() { got.append(v) }
    }
    XCTAssertEqual(got, expected)
    // All at once.
    var all = RESP.Reader()
    all.append(wire)
    var again: [RESPValue] = []
    while let v = try all.next() { again.append(v) }
    XCTAssertEqual(again, expected)
    XCTAssertNil(try all.next())
  }

  func testHostileRepliesAreRefusedNotBuffered() {
    for bad in ["?x\r\n", ":12a\r\n", "$99999999999\r\n", "*100000\r\n", "$2\r\nabcd\r\n"] {
      var r = RESP.Reader()
      r.append(Array(bad.utf8))
      XCTAssertThrowsError(try r.next(), bad)
    }
    var long = RESP.Reader()
    long.append([UInt8](repeating: UInt8(ascii: "+"), count: 70_000))
    XCTAssertThrowsError(try long.next())
  }

  /// A broken or hostile server: arrays nested without end (each level one recursion, so this
  /// overflowed the loop thread's stack), and one reply growing past what any answer of ours
  /// needs (4,096 bulk strings of 1 MiB each was 4 GiB buffered before the reply completed).
  func testDeeplyNestedOrEndlessRepliesAreRefused() {
    var deep = RESP.Reader()
    deep.append(Array(String(repeating: "*1\r\n", count: 200_000).utf8))
    XCTAssertThrowsError(try deep.next())
    var shallow = RESP.Reader()
    shallow.append(Array("*1\r\n*1\r\n*1\r\n:5\r\n".utf8))
    XCTAssertEqual(try shallow.next(), .array([.array([.array([.integer(5)])])]))

    var huge = RESP.Reader()
    huge.append(Array("*4096\r\n".utf8))
    let bulk = Array("$1048576\r\n".utf8) + [UInt8](repeating: 0x61, count: 1 << 20) + [13, 10]
    var threw = false
    for _ in 0..<4096 {
      huge.append(bulk)
      do { _ = try huge.next() } catch {
        threw = true
        break
      }
    }
    XCTAssertTrue(threw)
    XCTAssertLessThanOrEqual(huge.unparsedCount, RESP.Reader.maxBuffered + bulk.count)
  }

  func testScriptShaIsSHA1OfTheSource() {
    // sha1("return 1"), as `redis-cli SCRIPT LOAD "return 1"` prints it.
    XCTAssertEqual(
      SharedLimits.Script("return 1").sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
  }
}
