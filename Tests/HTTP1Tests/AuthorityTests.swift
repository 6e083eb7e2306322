import XCTest

@testable import HTTP1

final class AuthorityTests: XCTestCase {
  func parse(_ text: String) -> Authority? { Authority.parse(Substring(text)) }

  func testNames() {
    XCTAssertEqual(parse("example.com"), Authority(host: "example.com", port: nil))
    XCTAssertEqual(parse("Example.COM:8080"), Authority(host: "example.com", port: 8080))
    XCTAssertEqual(parse("example.com."), Authority(host: "example.com", port: nil))
    XCTAssertEqual(parse("EXAMPLE.com.:443"), Authority(host: "example.com", port: 443))
    XCTAssertEqual(parse("a_b-c.x9"), Authority(host: "a_b-c.x9", port: nil))
    XCTAssertEqual(parse("localhost"), Authority(host: "localhost", port: nil))
    XCTAssertEqual(parse("1.example.com"), Authority(host: "1.example.com", port: nil))
    XCTAssertEqual(parse(String(repeating: "a", count: 63) + ".com")?.host.count, 67)
    for bad in [
      "", ".", "..", "example.com..", ".example.com", "a..b", "ho st", "user@host", "user:pw@host",
      "h%41st", "héllo", "a/b", "a?b", "a#b", "a!b", "a*b", "a,b", "a;b", "a=b", "a~b", "a\tb",
      String(repeating: "a", count: 64) + ".com", String(repeating: "a.", count: 127) + "ab",
    ] {
      XCTAssertNil(parse(bad), bad)
    }
  }

  func testPorts() {
    XCTAssertEqual(parse("h:1")?.port, 1)
    XCTAssertEqual(parse("h:65535")?.port, 65535)
    XCTAssertEqual(parse("h:080")?.port, 80)
    for bad in [
      "h:", "h:0", "h:00000", "h:65536", "h:99999", "h:123456", "h:+80", "h:-1", "h:8 0", "h:80:80",
      ":80", "h:0x50",
    ] {
      XCTAssertNil(parse(bad), bad)
    }
  }

  func testIPv4() {
    XCTAssertEqual(parse("127.0.0.1"), Authority(host: "127.0.0.1", port: nil))
    XCTAssertEqual(parse("10.0.0.255:8080"), Authority(host: "10.0.0.255", port: 8080))
    XCTAssertEqual(parse("1.2.3.4."), Authority(host: "1.2.3.4", port: nil))
    // Spellings that resolvers read as addresses, and would slip past host rules.
    for bad in [
      "2130706433", "0x7f.1", "0x7f000001", "127.1", "127.0.1", "0177.0.0.1", "127.000.0.1",
      "256.0.0.1", "1.2.3.4.5", "example.123", "example.0x1f", "a.0x", "1.2.3.04",
    ] {
      XCTAssertNil(parse(bad), bad)
    }
  }

  func testIPv6() {
    XCTAssertEqual(parse("[::1]:8443"), Authority(host: "::1", port: 8443, isIPv6: true))
    XCTAssertEqual(parse("[::1]"), Authority(host: "::1", port: nil, isIPv6: true))
    XCTAssertEqual(parse("[::1]:8443")?.description, "[::1]:8443")
    let canonical: [(String, String)] = [
      ("[0:0:0:0:0:0:0:1]", "::1"),
      ("[::]", "::"),
      ("[2001:DB8::1]", "2001:db8::1"),
      ("[2001:0db8:0000:0000:0000:0000:0000:0001]", "2001:db8::1"),
      ("[1:0:0:2:0:0:0:3]", "1:0:0:2::3"),
      ("[1:0:0:2:2:0:0:3]", "1::2:2:0:0:3"),
      ("[1:2:3:4:5:6:7:8]", "1:2:3:4:5:6:7:8"),
      ("[1:2:3:4:5:6:7::]", "1:2:3:4:5:6:7:0"),
      ("[1::]", "1::"),
      ("[::ffff:1.2.3.4]", "::ffff:1.2.3.4"),
      ("[::FFFF:0102:0304]", "::ffff:1.2.3.4"),
      ("[64:ff9b::192.0.2.33]", "64:ff9b::c000:221"),
      ("[fe80::1:0:0:1]", "fe80::1:0:0:1"),
    ]
    for (text, host) in canonical {
      XCTAssertEqual(parse(text), Authority(host: host, port: nil, isIPv6: true), text)
    }
    for bad in [
      "::1", "[::1", "::1]", "[]", "[:]", "[:::]", "[1:::2]", "[1::2::3]", "[1:2:3:4:5:6:7:8:9]",
      "[1:2:3:4:5:6:7]", "[12345::]", "[fe80::1%25eth0]", "[fe80::1%eth0]", "[v1.x]", "[::1]x",
      "[::1]:", "[::1]:0", "[::g]", "[1:]", "[:1]", "[::1.2.3]", "[::1.2.3.4.5]", "[::01.2.3.4]",
      "[1:2:3:4:5:6:7:1.2.3.4]", "[::1] ", "[ ::1]",
    ] {
      XCTAssertNil(parse(bad), bad)
    }
  }

  func testSubstringOfLargerString() {
    let text = "Host: Example.org:81 tail"
    let start = text.index(text.startIndex, offsetBy: 6)
    let end = text.index(start, offsetBy: 14)
    XCTAssertEqual(Authority.parse(text[start..<end]), Authority(host: "example.org", port: 81))
  }
}

final class ByteClassTests: XCTestCase {
  func testMasksMatchTheRFCLists() {
    let alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    let digit = "0123456789"
    let tchar = Set((alpha + digit + "!#$%&'*+-.^_`|~").utf8)
    let target = Set((alpha + digit + "-._~" + "!$&'()*+,;=" + ":@/?").utf8)
    let host = Set((alpha + digit + "-._").utf8)
    for b in UInt8.min...UInt8.max {
      XCTAssertEqual(isTokenChar(b), tchar.contains(b), "tchar \(b)")
      XCTAssertEqual(isTargetChar(b), target.contains(b), "target \(b)")
      XCTAssertEqual(isHostChar(b), host.contains(b), "host \(b)")
      XCTAssertEqual(isFieldVChar(b), b == 0x09 || (b >= 0x20 && b <= 0x7E), "vchar \(b)")
      let hex = "0123456789abcdefABCDEF".utf8.contains(b)
      XCTAssertEqual(hexValue(b) != nil, hex, "hex \(b)")
      if hex { XCTAssertEqual(hexValue(b), UInt8(String(UnicodeScalar(b)), radix: 16)) }
    }
  }
}
