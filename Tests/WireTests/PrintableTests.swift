import Wire
import XCTest

final class PrintableTests: XCTestCase {
  func testControlsOfEveryKindAreReplacedAndTheRestKept() {
    XCTAssertEqual(Printable.text("plain é ✓ <x> \"q\""), "plain é ✓ <x> \"q\"")
    XCTAssertEqual(
      Printable.text("a\nb\r\u{1B}[31mc\u{0}d\u{7F}e\u{9B}f\u{2028}g\u{2029}h\t"),
      "a?b??[31mc?d?e?f?g?h?")
    for v in UInt32(0)...0x3000 {
      guard let u = Unicode.Scalar(v) else { continue }
      let shown = Printable.text(String(Character(u)))
      XCTAssertEqual(shown == "?" && u != "?", Printable.isControl(u), "U+\(String(v, radix: 16))")
    }
  }
}
