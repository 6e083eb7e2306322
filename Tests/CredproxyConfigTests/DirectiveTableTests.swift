import XCTest

@testable import CredproxyConfig

/// The directive table is the only list of directives: these check it is whole, and that the
/// messages about misplaced and unknown directives come from it.
final class DirectiveTableTests: XCTestCase {
  func testEveryDirectiveHasAHandlerAndAUsage() {
    XCTAssertFalse(Directive.table.isEmpty)
    for d in Directive.table {
      XCTAssertFalse(d.places.isEmpty, d.name)
      XCTAssertTrue(d.usage.hasPrefix(d.name), "\(d.name): \(d.usage)")
      for place in d.places {
        // A line in each place it is allowed is read by a handler, or opens a block there.
        let opensHere = place == .top && d.opens != nil
        XCTAssertTrue(d.handler(in: place) != nil || opensHere, "\(d.name) in \(place)")
      }
      if let opener = d.opens {
        XCTAssertTrue(d.places.contains(.top), d.name)
        XCTAssertTrue(opener.usage.hasPrefix(d.name) && opener.usage.hasSuffix("{"), opener.usage)
      }
    }
    XCTAssertEqual(Set(Directive.table.map(\.name)).count, Directive.table.count, "a name twice")
    XCTAssertEqual(Directive.openingNames, "route, credentials or client")
  }

  func testUnknownDirectiveListsWhatTheBlockAllows() {
    for kind in BlockKind.allCases {
      let allowed = Directive.names(in: kind)
      let text: String
      switch kind {
      case .top: text = "bogus-directive x\n"
      case .route: text = "route a.example.com {\n  bogus-directive x\n}\n"
      case .credentials: text = "credentials c {\n  bogus-directive x\n  source adc\n}\n"
      case .client: text = "client c {\n  bogus-directive x\n  token env:T\n}\n"
      }
      let d = diagnostics(text)
      let line = kind == .top ? 1 : 2
      let column = kind == .top ? 1 : 3
      XCTAssertTrue(
        d.contains(
          "proxy.conf:\(line):\(column): unknown directive \"bogus-directive\"; expected one of \(allowed.joined(separator: ", ")) \(kind.placeText)"
        ), "\(kind): \(d)")
    }
  }

  func testDirectiveInTheWrongBlockSaysWhereItIsAllowed() {
    for d in Directive.table where !d.places.contains(.credentials) {
      let text = "credentials c {\n  \(d.name) x\n  source adc\n}\n"
      let where_ = d.placesText(otherThan: .credentials)!
      XCTAssertTrue(
        diagnostics(text).contains(
          "proxy.conf:2:3: \(d.name) is only valid \(where_); expected one of source, iam-endpoint, exec-timeout, refresh-window in a credentials block"
        ), "\(d.name): \(diagnostics(text))")
    }
    XCTAssertEqual(
      Directive.named["max-concurrent"]?.placesText(otherThan: .top),
      "inside a route block or a client block")
    XCTAssertEqual(
      Directive.named["credentials"]?.placesText(otherThan: .client),
      "at top level or inside a route block")
    XCTAssertEqual(Directive.named["listen"]?.placesText(otherThan: .top), nil)
  }
}
