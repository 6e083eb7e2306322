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

  func testScriptShaIsSHA1OfTheSource() {
    // sha1("return 1"), as `redis-cli SCRIPT LOAD "return 1"` prints it.
    XCTAssertEqual(
      SharedLimits.Script("return 1").sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
  }
}
