import XCTest

@testable import CredproxyCore

final class ByteBufferTests: XCTestCase {
  func contents(_ b: ByteBuffer) -> [UInt8] { b.withReadableBytes { Array($0) } }

  func testAppendConsumeKeepsOrder() {
    let b = ByteBuffer()
    b.append("hello ")
    b.append(Array("world".utf8))
    XCTAssertEqual(b.count, 11)
    b.consume(6)
    XCTAssertEqual(String(decoding: contents(b), as: UTF8.self), "world")
    b.consume(5)
    XCTAssertTrue(b.isEmpty)
  }

  /// Random appends and consumes agree with a plain array model, across growth and compaction.
  func testAgreesWithAnArrayModel() {
    var rng = SystemRandomNumberGenerator()
    let b = ByteBuffer()
    var model: [UInt8] = []
    for step in 0..<5_000 {
      if Bool.random(using: &rng) || model.isEmpty {
        let n = Int.random(in: 0...9_000, using: &rng)
        let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &+ step) }
        b.append(bytes)
        model += bytes
      } else {
        let n = Int.random(in: 0...model.count, using: &rng)
        b.consume(n)
        model.removeFirst(n)
      }
      XCTAssertEqual(b.count, model.count)
      if step % 97 == 0 { XCTAssertEqual(contents(b), model) }
    }
    XCTAssertEqual(contents(b), model)
  }

  func testTakeCopiesAndConsumes() {
    let b = ByteBuffer()
    b.append("abcdef")
    var out = [UInt8](repeating: 0, count: 4)
    let n = out.withUnsafeMutableBytes { b.take(into: $0.baseAddress!, max: 4) }
    XCTAssertEqual(n, 4)
    XCTAssertEqual(out, Array("abcd".utf8))
    XCTAssertEqual(contents(b), Array("ef".utf8))
  }

  func testResetGivesMemoryBackAndStaysUsable() {
    let b = ByteBuffer()
    b.append([UInt8](repeating: 7, count: 1 << 20))
    b.consume(1 << 20)
    b.reset()
    XCTAssertTrue(b.isEmpty)
    b.append("x")
    XCTAssertEqual(contents(b), [0x78])
  }
}
