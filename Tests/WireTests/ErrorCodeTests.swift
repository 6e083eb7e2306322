import Foundation
import XCTest

@testable import Wire

/// The README's error table and the `ErrorCode` enum cannot drift apart.
final class ErrorCodeTests: XCTestCase {
  /// `(status, code)` for each row `| 403 | \`denied\` | … |` of the README's error table.
  func readmeRows() throws -> [(Int, String)] {
    let readme = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("README.md")
    let text = try String(contentsOf: readme, encoding: .utf8)
    guard let start = text.range(of: "| status | code | when |") else {
      XCTFail("README.md has no error table")
      return []
    }
    var rows: [(Int, String)] = []
    for line in text[start.upperBound...].split(separator: "\n").dropFirst() {
      guard line.hasPrefix("|") else { break }
      let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      guard cells.count >= 3, let status = Int(cells[0]) else {
        XCTFail("not a `| status | code | when |` row: \(line)")
        continue
      }
      XCTAssertTrue(cells[1].hasPrefix("`") && cells[1].hasSuffix("`"), "one code per row: \(line)")
      rows.append((status, String(cells[1].dropFirst().dropLast())))
    }
    return rows
  }

  func testEveryCodeACallerCanSeeIsInTheReadmeWithItsStatus() throws {
    let rows = try readmeRows()
    for code in ErrorCode.allCases where code.isSentToCaller {
      let matching = rows.filter { $0.1 == code.rawValue }
      XCTAssertEqual(matching.count, 1, "\(code) should have exactly one README row")
      XCTAssertEqual(matching.first?.0, code.status, "README status of \(code)")
    }
  }

  func testEveryReadmeCodeIsACodeCredproxySends() throws {
    for (status, name) in try readmeRows() {
      guard let code = ErrorCode(rawValue: name) else {
        XCTFail("README lists \(name), which credproxy never sends")
        continue
      }
      XCTAssertTrue(code.isSentToCaller, name)
      XCTAssertEqual(code.status, status, name)
    }
  }

  func testParseFailuresMapToTheirOwnStatus() {
    for status in [400, 408, 413, 414, 417, 431, 501, 505] {
      XCTAssertEqual(ErrorCode.forParseFailure(status: status).status, status)
    }
  }

  func testCodesAreDistinctSnakeCaseWithOneLineMeanings() {
    XCTAssertEqual(Set(ErrorCode.allCases.map(\.rawValue)).count, ErrorCode.allCases.count)
    for code in ErrorCode.allCases {
      XCTAssertTrue(code.rawValue.allSatisfy { $0.isLowercase || $0 == "_" }, code.rawValue)
      XCTAssertFalse(code.meaning.isEmpty || code.meaning.contains("\n"), code.rawValue)
      XCTAssertEqual("\(code)", code.rawValue)
    }
  }
}
