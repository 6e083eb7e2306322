import XCTest

@testable import Wire

/// HeaderNameSet answers as a case-insensitive scan of its list would, for every spelling.
final class HeaderNameSetTests: XCTestCase {
  func testMatchesLikeTheListItReplaces() {
    let names = HeaderNames.hopByHop + HeaderNames.framing + ["proxy-authenticate", "host"]
    let set = HeaderNameSet(names)
    let probes =
      names + names.map { $0.uppercased() } + [
        "Connection", "CONTENT-length", "content-lengthx", "content-lengt", "", "te ", "T", "tE",
        "host", "hosts", "Keep-Alive", "keep_alive", "transfer-encodinG", "connectio\u{0}",
        "connectión", "Ｃonnection", String(repeating: "x", count: 200),
      ]
    for probe in probes {
      let expected = names.contains { HeaderNames.equal(probe, $0) }
      XCTAssertEqual(set.contains(probe), expected, probe)
    }
    // A bridged or substring-backed name (not native contiguous UTF-8) takes the slow path.
    XCTAssertTrue(set.contains(String("xxUpgradexx".dropFirst(2).dropLast(2))))
    XCTAssertFalse(HeaderNameSet([]).contains("connection"))
  }
}
