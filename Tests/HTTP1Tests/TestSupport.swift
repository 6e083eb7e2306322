import XCTest

@testable import HTTP1

/// A deterministic generator for the random splits, so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Split points for feeding `count` bytes: every byte alone, and a few random splits.
func splitPlans(count: Int, seed: UInt64 = 42, randomPlans: Int = 8) -> [[Int]] {
  var plans: [[Int]] = [[count], Array(repeating: 1, count: count)]
  var rng = SplitMix64(seed: seed ^ UInt64(count))
  for _ in 0..<randomPlans {
    var plan: [Int] = []
    var left = count
    while left > 0 {
      let n = Int.random(in: 1...max(1, min(left, 17)), using: &rng)
      plan.append(n)
      left -= n
    }
    plans.append(plan)
  }
  return plans
}

/// Feeds a growing buffer to a head parser, `plan` bytes at a time, as the connection does.
func parseHead(_ bytes: [UInt8], plan: [Int], limits: HTTPLimits = HTTPLimits()) -> HeadParseResult
{
  var parser = RequestHeadParser(limits: limits)
  var available = 0
  var result = HeadParseResult.needMore
  for n in plan {
    available += n
    result = bytes.withUnsafeBytes {
      parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<available]))
    }
    if case .needMore = result { continue }
    return result
  }
  return result
}

/// Parses `bytes` whole, byte by byte and in random splits; fails the test if the results differ.
func parseHeadAllWays(
  _ bytes: [UInt8], limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath,
  line: UInt = #line
) -> HeadParseResult {
  let plans = splitPlans(count: bytes.count)
  let whole = parseHead(bytes, plan: plans[0], limits: limits)
  for plan in plans.dropFirst() {
    let split = parseHead(bytes, plan: plan, limits: limits)
    XCTAssertEqual(split, whole, "result depends on the split \(plan)", file: file, line: line)
  }
  return whole
}

@discardableResult
func assertAccepted(
  _ text: String, limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath,
  line: UInt = #line
) -> RequestHead? {
  let bytes = Array(text.utf8)
  switch parseHeadAllWays(bytes, limits: limits, file: file, line: line) {
  case .complete(let head, let consumed):
    XCTAssertEqual(consumed, bytes.count, "consumed", file: file, line: line)
    return head
  case let other:
    XCTFail("expected a complete head, got \(other)", file: file, line: line)
    return nil
  }
}

func assertRejected(
  _ text: String, _ status: Int, _ reason: String? = nil, limits: HTTPLimits = HTTPLimits(),
  file: StaticString = #filePath, line: UInt = #line
) {
  assertRejected(bytes: Array(text.utf8), status, reason, limits: limits, file: file, line: line)
}

func assertRejected(
  bytes: [UInt8], _ status: Int, _ reason: String? = nil, limits: HTTPLimits = HTTPLimits(),
  file: StaticString = #filePath, line: UInt = #line
) {
  switch parseHeadAllWays(bytes, limits: limits, file: file, line: line) {
  case .failed(let error):
    XCTAssertEqual(error.status, status, "status for \(error.reason)", file: file, line: line)
    if let reason { XCTAssertEqual(error.reason, reason, file: file, line: line) }
    XCTAssertFalse(error.reason.isEmpty, file: file, line: line)
    XCTAssertEqual(
      error.reason, error.reason.lowercased(), "reason is lowercase", file: file, line: line)
    XCTAssertFalse(error.reason.contains("\n"), file: file, line: line)
  case let other:
    XCTFail("expected \(status), got \(other)", file: file, line: line)
  }
}

/// The outcome of feeding a whole body to a decoder in pieces.
struct DecodeOutcome: Equatable {
  var body: [UInt8]
  var result: BodyDecodeResult
  /// Input bytes consumed in total (through the end of the body when done).
  var consumed: Int
}

func decodeBody(
  _ input: [UInt8], framing: RequestHead.BodyFraming, maxBody: UInt64, plan: [Int]
) -> DecodeOutcome {
  var decoder = BodyDecoder(framing: framing, maxBody: maxBody)
  var body: [UInt8] = []
  var offset = 0
  var pending = 0
  var result = BodyDecodeResult.progress(consumed: 0)
  for n in plan {
    pending += n
    result = input.withUnsafeBytes { raw in
      decoder.decode(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + pending)])) {
        body.append(contentsOf: $0)
      }
    }
    switch result {
    case .progress(let consumed):
      offset += consumed
      pending -= consumed
    case .done(let consumed):
      XCTAssertTrue(decoder.isComplete)
      XCTAssertEqual(decoder.bodyBytesSoFar, UInt64(body.count))
      return DecodeOutcome(body: body, result: .done(consumed: 0), consumed: offset + consumed)
    case .failed:
      return DecodeOutcome(body: [], result: result, consumed: 0)
    }
  }
  XCTAssertFalse(decoder.isComplete)
  XCTAssertEqual(decoder.bodyBytesSoFar, UInt64(body.count))
  return DecodeOutcome(body: body, result: result, consumed: offset)
}

/// Decodes whole, byte by byte and in random splits; fails the test if the outcomes differ.
func decodeBodyAllWays(
  _ input: [UInt8], framing: RequestHead.BodyFraming, maxBody: UInt64 = 1 << 20,
  file: StaticString = #filePath, line: UInt = #line
) -> DecodeOutcome {
  let plans = splitPlans(count: max(input.count, 1)).map { input.isEmpty ? [0] : $0 }
  let whole = decodeBody(input, framing: framing, maxBody: maxBody, plan: plans[0])
  for plan in plans.dropFirst() {
    var split = decodeBody(input, framing: framing, maxBody: maxBody, plan: plan)
    // A body still in progress reports the last call's consumed count; compare totals only.
    if case .progress = split.result, case .progress = whole.result { split.result = whole.result }
    XCTAssertEqual(split, whole, "outcome depends on the split \(plan)", file: file, line: line)
  }
  return whole
}

func assertBodyRejected(
  _ text: String, framing: RequestHead.BodyFraming = .chunked, maxBody: UInt64 = 1 << 20,
  _ status: Int, _ reason: String? = nil, file: StaticString = #filePath, line: UInt = #line
) {
  let outcome = decodeBodyAllWays(
    Array(text.utf8), framing: framing, maxBody: maxBody, file: file, line: line)
  guard case .failed(let error) = outcome.result else {
    XCTFail("expected \(status), got \(outcome)", file: file, line: line)
    return
  }
  XCTAssertEqual(error.status, status, "status for \(error.reason)", file: file, line: line)
  if let reason { XCTAssertEqual(error.reason, reason, file: file, line: line) }
}
