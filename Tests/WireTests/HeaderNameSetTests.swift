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

final class TrimmingOWSTests: XCTestCase {
  func testTrimsSpacesAndTabsOnlyAtTheEnds() {
    XCTAssertEqual(HeaderNames.trimmingOWS(" \t Bearer a b\t \t"[...]), "Bearer a b")
    XCTAssertEqual(HeaderNames.trimmingOWS("x"[...]), "x")
    XCTAssertEqual(HeaderNames.trimmingOWS(""[...]), "")
    XCTAssertEqual(HeaderNames.trimmingOWS(" \t "[...]), "")
    XCTAssertEqual(HeaderNames.trimmingOWS(" é\u{301} "[...]), "é\u{301}")
    // CR, LF and other whitespace are not OWS: they stay (the parser refuses them earlier).
    XCTAssertEqual(HeaderNames.trimmingOWS("\na\r"[...]), "\na\r")
    let long = String(repeating: "t", count: 4096)
    XCTAssertEqual(HeaderNames.trimmingOWS("  \(long) "[...]), long[...])
  }
}
