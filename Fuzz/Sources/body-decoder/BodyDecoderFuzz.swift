// The body decoder on its own: the input is a chunked body (sizes, extensions, data, trailer
// section) and whatever follows it.
//
// Property: the decoded bytes and the verdict (done after N bytes, needs more, or the same
// failure) do not depend on how the input is split, and progress always uses the whole input.
// A smaller max-body changes nothing but to refuse with 413: when the decoder does not fail
// under the small limit it gives what it gave under the large one, and a body longer than the
// small limit is refused with 413.
import FuzzSupport
import HTTP1

@main enum BodyDecoderFuzz {
  static func main() { runFuzzer(fuzz) }
}

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = fuzzBytes(data, size)
  let plans = splitPlans(bytes)
  let large = checkBody(bytes, framing: .chunked, maxBody: 1 << 20, plans: plans)
  let smallLimit: UInt64 = 16
  let small = checkBody(bytes, framing: .chunked, maxBody: smallLimit, plans: plans)
  if case .failed(let error) = small.end {
    if large.end != small.end {
      fuzzCheck(
        error.status == 413,
        "max-body \(smallLimit) fails with \(error) where a large limit gives \(large.end)")
    }
  } else {
    fuzzCheck(
      small == large,
      """
      max-body \(smallLimit) gives a different body than a large limit
      input: \(escaped(bytes))
      small: \(small.end), body \(escaped(small.body))
      large: \(large.end), body \(escaped(large.body))
      """)
  }
  if large.body.count > Int(smallLimit) {
    guard case .failed(let error) = small.end, error.status == 413 else {
      fuzzCheck(
        false,
        "a \(large.body.count)-byte body is not refused under max-body \(smallLimit): \(small.end)")
      return 0
    }
  }
  // Content-Length framing: exactly the first N bytes are the body.
  var random = FuzzRandom(hashing: bytes)
  let length = random.next() % UInt64(bytes.count + 2)
  let fixed = checkBody(bytes, framing: .contentLength(length), maxBody: 1 << 20, plans: plans)
  if length <= UInt64(bytes.count) {
    fuzzCheck(
      fixed.end == BodyOutcome.End.done(Int(length)) && fixed.body[...] == bytes[0..<Int(length)],
      "content-length \(length) on \(bytes.count) bytes gives \(fixed.end)")
  } else {
    fuzzCheck(
      fixed.end == BodyOutcome.End.more && fixed.body == bytes,
      "content-length \(length) on \(bytes.count) bytes gives \(fixed.end)")
  }
  return 0
}
