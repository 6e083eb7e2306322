import Foundation
import Glibc
import XCTest

@testable import Wire

/// A seeded generator, so that a failure can be replayed (the seed is in the message).
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

let iterations = 2000

func seeded() -> (SplitMix64, UInt64) {
  let seed = UInt64.random(in: 0...UInt64.max)
  return (SplitMix64(seed: seed), seed)
}

/// Eight 16-bit groups, with long runs of zeros and the special prefixes often enough to matter.
func randomIPv6(_ rng: inout SplitMix64) -> (UInt64, UInt64) {
  var words = (0..<8).map { _ in
    Bool.random(using: &rng) ? 0 : UInt16.random(in: 0...0xFFFF, using: &rng)
  }
  switch Int.random(in: 0..<6, using: &rng) {
  case 0: for k in 0..<5 { words[k] = 0 }; words[5] = 0xFFFF  // IPv4-mapped
  case 1: for k in 0..<6 { words[k] = 0 }  // IPv4-compatible
  default: break
  }
  var hi: UInt64 = 0
  var lo: UInt64 = 0
  for k in 0..<4 { hi = hi << 16 | UInt64(words[k]) }
  for k in 4..<8 { lo = lo << 16 | UInt64(words[k]) }
  return (hi, lo)
}

func inetNtop6(_ hi: UInt64, _ lo: UInt64) -> String {
  var raw = in6_addr()
  withUnsafeMutableBytes(of: &raw) { b in
    for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: hi >> (56 - 8 * UInt64(i))) }
    for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: lo >> (56 - 8 * UInt64(i))) }
  }
  var buf = [CChar](repeating: 0, count: 64)
  _ = inet_ntop(AF_INET6, &raw, &buf, 64)
  return String(
    decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

final class IPTextPropertyTests: XCTestCase {
  func testIPv4PrintParseRoundTrip() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let v = UInt32.random(in: 0...UInt32.max, using: &rng)
      let text = IPText.formatIPv4(v)
      XCTAssertEqual(IPText.ipv4Canonical(text.utf8), v, "seed \(seed): \(text)")
      XCTAssertEqual(IPText.ipv4Lenient(text.utf8), v, "seed \(seed): \(text)")
      XCTAssertEqual(IPAddress(text), IPAddress(ipv4: v), "seed \(seed): \(text)")
      XCTAssertEqual(IPAddress(ipv4: v).description, text)
      var a = in_addr()
      XCTAssertEqual(inet_pton(AF_INET, text, &a), 1, text)
      XCTAssertEqual(UInt32(bigEndian: a.s_addr), v, text)
    }
  }

  /// Every spelling `inet_aton` accepts reads as the same address in the lenient parser, and
  /// only the canonical one in the strict parser.
  func testIPv4LenientAgreesWithInetAton() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let v = UInt32.random(in: 0...UInt32.max, using: &rng)
      let bytes = [v >> 24, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF]
      func spell(_ n: UInt32) -> String {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: return String(n)
        case 1: return n == 0 ? "0" : "0" + String(n, radix: 8)
        default: return "0x" + String(n, radix: 16, uppercase: Bool.random(using: &rng))
        }
      }
      let parts: [UInt32]
      switch Int.random(in: 1...4, using: &rng) {
      case 1: parts = [v]
      case 2: parts = [bytes[0], v & 0xFF_FFFF]
      case 3: parts = [bytes[0], bytes[1], v & 0xFFFF]
      default: parts = bytes
      }
      let text = parts.map(spell).joined(separator: ".")
      var a = in_addr()
      XCTAssertEqual(inet_aton(text, &a), 1, "seed \(seed): \(text)")
      XCTAssertEqual(
        IPText.ipv4Lenient(text.utf8), UInt32(bigEndian: a.s_addr), "seed \(seed): \(text)")
      XCTAssertEqual(IPText.ipv4Canonical(text.utf8) != nil, text == IPText.formatIPv4(v), text)
      XCTAssertTrue(IPText.endsInNumber(text.utf8), text)
      XCTAssertEqual(CanonicalHost(text).address, IPAddress(ipv4: v), "seed \(seed): \(text)")
    }
  }

  func testIPv6PrintParseRoundTripAndInetNtop() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let (hi, lo) = randomIPv6(&rng)
      let text = IPText.formatIPv6(hi, lo)
      XCTAssertEqual(text, inetNtop6(hi, lo), "seed \(seed)")
      let back = IPText.ipv6(text)
      XCTAssertEqual(back?.0, hi, "seed \(seed): \(text)")
      XCTAssertEqual(back?.1, lo, "seed \(seed): \(text)")
      XCTAssertEqual(IPAddress(text), IPAddress(ipv6High: hi, low: lo), text)
    }
  }

  /// Long-hand, upper-case, zero-padded spellings all print as the one canonical form, and the
  /// canonical form is a fixed point.
  func testIPv6CanonicalFormIsIdempotent() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let (hi, lo) = randomIPv6(&rng)
      let words = (0..<8).map { k in
        UInt16(truncatingIfNeeded: (k < 4 ? hi : lo) >> (48 - 16 * UInt64(k % 4)))
      }
      let spelled = words.map { w -> String in
        var s = String(w, radix: 16, uppercase: Bool.random(using: &rng))
        if Bool.random(using: &rng) { s = String(repeating: "0", count: 4 - s.count) + s }
        return s
      }.joined(separator: ":")
      let canonical = IPText.canonicalIPv6(spelled)
      XCTAssertEqual(canonical, IPText.formatIPv6(hi, lo), "seed \(seed): \(spelled)")
      XCTAssertEqual(canonical.flatMap { IPText.canonicalIPv6($0) }, canonical, "seed \(seed)")
      let host = CanonicalHost("[\(spelled)]")
      XCTAssertEqual(host.address, IPAddress(ipv6High: hi, low: lo), "seed \(seed): \(spelled)")
      XCTAssertEqual(CanonicalHost(String(host.text)).address, host.address)
    }
  }

  func testCIDRPrintParseRoundTrip() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let v6 = Bool.random(using: &rng)
      let a: IPAddress
      if v6 {
        let (hi, lo) = randomIPv6(&rng)
        a = IPAddress(ipv6High: hi, low: lo)
      } else {
        a = IPAddress(ipv4: UInt32.random(in: 0...UInt32.max, using: &rng))
      }
      let length = Int.random(in: 0...(v6 ? 128 : 32), using: &rng)
      let network = CIDR.masked(a, length)
      guard let block = CIDR(address: network, prefixLength: length) else {
        return XCTFail("seed \(seed): \(network)/\(length)")
      }
      XCTAssertEqual(CIDR(block.description), block, "seed \(seed): \(block)")
      XCTAssertTrue(block.contains(a), "seed \(seed): \(a) in \(block)")
    }
  }

  func testCanonicalHostIsIdempotent() {
    var (rng, seed) = seeded()
    let alphabet = Array("aZ09.-_:[]x%".utf8)
    for _ in 0..<iterations {
      let n = Int.random(in: 0...12, using: &rng)
      let text = String(
        decoding: (0..<n).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self)
      let once = CanonicalHost(text)
      let twice = CanonicalHost(String(once.text))
      XCTAssertEqual(twice.address, once.address, "seed \(seed): \(text)")
      if once.address == nil { XCTAssertEqual(twice.text, once.text, "seed \(seed): \(text)") }
    }
  }
}

final class EncodingPropertyTests: XCTestCase {
  func testHexDecodeOfEncodeIsIdentity() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in
        UInt8.random(in: 0...255, using: &rng)
      }
      let upper = Bool.random(using: &rng)
      let text = Hex.encode(bytes, uppercase: upper)
      XCTAssertEqual(Hex.decode(text), bytes, "seed \(seed)")
      XCTAssertEqual(text, bytes.map { String(format: upper ? "%02X" : "%02x", $0) }.joined())
    }
    for b in UInt8.min...UInt8.max {
      let expected = UInt8(String(UnicodeScalar(b)), radix: 16)
      XCTAssertEqual(
        Hex.value(b), "0123456789abcdefABCDEF".utf8.contains(b) ? expected : nil, "\(b)")
    }
    XCTAssertNil(Hex.decode("abc"))
    XCTAssertNil(Hex.decode("zz"))
  }

  func testJSONEscapedStringsDecodeToTheOriginal() throws {
    var (rng, seed) = seeded()
    let specials: [Unicode.Scalar] = [
      "\"", "\\", "\n", "\r", "\t", "\u{08}", "\u{0C}", "\u{7F}", "\u{2028}", "\u{2029}", "/", "é",
      "😀", "\u{0}",
    ]
    for _ in 0..<iterations {
      var s = ""
      for _ in 0..<Int.random(in: 0...20, using: &rng) {
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: s.unicodeScalars.append(Unicode.Scalar(UInt8.random(in: 0...0x7F, using: &rng)))
        case 1: s.unicodeScalars.append(specials.randomElement(using: &rng)!)
        default:
          s.unicodeScalars.append(Unicode.Scalar(UInt32.random(in: 0x80...0xD7FF, using: &rng))!)
        }
      }
      let literal = JSONText.quoted(s)
      let array = try JSONSerialization.jsonObject(with: Data("[\(literal)]".utf8)) as? [String]
      XCTAssertEqual(array, [s], "seed \(seed): \(literal)")
      XCTAssertEqual(
        try JSONDecoder().decode(String.self, from: Data(literal.utf8)), s, "seed \(seed)")
      // One line, safe inside a <script>: no raw control characters or line separators.
      XCTAssertFalse(
        literal.unicodeScalars.contains {
          $0.value < 0x20 || $0.value == 0x7F || $0 == "\u{2028}" || $0 == "\u{2029}"
        })
    }
  }

  func testISO8601OutputParsesWithFoundation() {
    var (rng, seed) = seeded()
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    fractional.timeZone = TimeZone(identifier: "UTC")
    let whole = ISO8601DateFormatter()
    for _ in 0..<iterations {
      let ms = Int64.random(in: 0...253_402_300_799_999, using: &rng)  // 1970 through 9999
      let t = Double(ms) / 1000
      let text = UTCTimestamp.iso8601(t)
      guard let parsed = fractional.date(from: text) else {
        XCTFail("seed \(seed): \(text) does not parse")
        continue
      }
      XCTAssertEqual(
        Int64((parsed.timeIntervalSince1970 * 1000).rounded()), ms, "seed \(seed): \(text)")
      XCTAssertEqual(text, fractional.string(from: Date(timeIntervalSince1970: t)), "seed \(seed)")
      let w = ms / 1000
      let wholeText = UTCTimestamp.iso8601(wholeSeconds: w, milliseconds: nil)
      XCTAssertEqual(
        wholeText, whole.string(from: Date(timeIntervalSince1970: Double(w))), "seed \(seed)")
      XCTAssertEqual(whole.date(from: wholeText)?.timeIntervalSince1970, Double(w), "seed \(seed)")
    }
  }
}

final class RulePropertyTests: XCTestCase {
  func testConstantTimeCompareAgreesWithEquality() {
    var (rng, seed) = seeded()
    for _ in 0..<iterations {
      let a = (0..<Int.random(in: 0...6, using: &rng)).map { _ in
        UInt8.random(in: 0...2, using: &rng)
      }
      let b =
        Bool.random(using: &rng)
        ? a
        : (0..<Int.random(in: 0...6, using: &rng)).map { _ in UInt8.random(in: 0...2, using: &rng) }
      XCTAssertEqual(ConstantTime.equal(a, b), a == b, "seed \(seed): \(a) \(b)")
      XCTAssertEqual(ConstantTime.equal(b, a), a == b, "seed \(seed): \(b) \(a)")
      let sa = String(decoding: a.map { $0 + 0x61 }, as: UTF8.self)
      let sb = String(decoding: b.map { $0 + 0x61 }, as: UTF8.self)
      XCTAssertEqual(ConstantTime.equal(sa, sb), sa == sb)
    }
  }

  func testScopeNormalisationIgnoresOrderDuplicatesAndSpelling() {
    var (rng, seed) = seeded()
    let pool = ["a", "https://www.googleapis.com/auth/cloud-platform", "openid", "email", "x.y/z"]
    let separators = [" ", ",", "\t", "\n", " , ", ",,", "  "]
    for _ in 0..<iterations {
      let chosen = (0..<Int.random(in: 0...6, using: &rng)).map { _ in
        pool.randomElement(using: &rng)!
      }
      let expected = Array(Set(chosen)).sorted()
      // The same scopes, shuffled, duplicated and joined in random ways over random words.
      var words: [String] = []
      var rest = (chosen + chosen.filter { _ in Bool.random(using: &rng) }).shuffled(using: &rng)
      while !rest.isEmpty {
        let n = Int.random(in: 1...rest.count, using: &rng)
        var w = ""
        for s in rest.prefix(n) { w += s + separators.randomElement(using: &rng)! }
        if Bool.random(using: &rng) { w = separators.randomElement(using: &rng)! + w }
        words.append(w)
        rest.removeFirst(n)
      }
      let normal = ScopeList.normalize(words)
      XCTAssertEqual(normal, expected, "seed \(seed): \(words)")
      XCTAssertEqual(ScopeList.normalize(normal), normal, "seed \(seed)")
      XCTAssertEqual(ScopeList.normalize([normal.joined(separator: " ")]), normal, "seed \(seed)")
    }
  }

  func testFieldNameCompareIsASCIICaseInsensitive() {
    var (rng, seed) = seeded()
    let names = HeaderNames.hopByHop + HeaderNames.framing + ["x-api-key", "host"]
    for _ in 0..<iterations {
      let name = names.randomElement(using: &rng)!
      let spelled = String(name.map { Bool.random(using: &rng) ? Character($0.uppercased()) : $0 })
      XCTAssertTrue(HeaderNames.equal(spelled, name), "seed \(seed): \(spelled)")
      let other = names.randomElement(using: &rng)!
      XCTAssertEqual(
        HeaderNames.equal(spelled, other), spelled.lowercased() == other, "seed \(seed)")
    }
    XCTAssertFalse(HeaderNames.equal("Content_Length", "content-length"))
    XCTAssertFalse(HeaderNames.equal("K\u{212A}", "kk"))  // Kelvin sign: not ASCII
    XCTAssertEqual(Set(HeaderNames.hopByHop).count, HeaderNames.hopByHop.count)
    XCTAssertTrue(Set(HeaderNames.hopByHop).isDisjoint(with: HeaderNames.framing))
  }
}
