import XCTest

@testable import HTTP1

/// Random mutations of valid messages: the parser must never trap, and its answer must not depend
/// on how the bytes are split.
final class MutationTests: XCTestCase {
  static let interesting: [UInt8] =
    Array(" \t\r\n:;,=\"\\/%.?#@[]0aZ\u{0}".utf8) + [0x7F, 0x80, 0xC3, 0xFF]

  func mutate(_ bytes: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
    var out = bytes
    for _ in 0..<Int.random(in: 1...3, using: &rng) {
      let at = Int.random(in: 0..<max(out.count, 1), using: &rng)
      let byte = Self.interesting.randomElement(using: &rng)!
      switch Int.random(in: 0..<3, using: &rng) {
      case 0 where !out.isEmpty: out[at] = byte
      case 1: out.insert(byte, at: min(at, out.count))
      default: if !out.isEmpty { out.remove(at: at) }
      }
    }
    return out
  }

  func testMutatedHeads() {
    let seeds = [
      "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n",
      "POST http://h.example/x HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
      "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
      "PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
      "\r\nOPTIONS * HTTP/1.0\r\nX-Val: caf\u{e9}\r\n\r\n",
    ]
    var limits = HTTPLimits()
    limits.maxRequestLine = 40
    limits.maxHeaderBytes = 120
    limits.maxHeaderCount = 4
    var rng = SplitMix64(seed: 2024)
    for seed in seeds {
      let bytes = Array(seed.utf8)
      for _ in 0..<150 {
        let mutated = mutate(bytes, using: &rng)
        _ = parseHeadAllWays(mutated)
        _ = parseHeadAllWays(mutated, limits: limits)
      }
    }
  }

  func testMutatedChunkedBodies() {
    let seed = Array(
      "5;a=\"b\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: v\r\n\r\nNEXT".utf8)
    var rng = SplitMix64(seed: 99)
    for _ in 0..<400 {
      let mutated = mutate(seed, using: &rng)
      _ = decodeBodyAllWays(mutated, framing: .chunked, maxBody: 40)
    }
  }
}
