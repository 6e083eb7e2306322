// Feeding a request body to `BodyDecoder` in pieces, and the split-independence check, for
// the targets that decode bodies.
import HTTP1

/// What decoding a body gave: the body bytes and how it ended.
public struct BodyOutcome: Equatable, Sendable {
  public enum End: Equatable, Sendable {
    /// The body ended after this many input bytes.
    case done(Int)
    /// All input was used and the body is not over.
    case more
    case failed(HTTPParseError)
  }
  public var body: [UInt8] = []
  public var end: End = .more
}

/// Decodes `input` fed in pieces (each an exact-size buffer), checking each step's bookkeeping.
public func decodeBody(
  _ input: [UInt8], framing: RequestHead.BodyFraming, maxBody: UInt64, plan: [Int]
) -> BodyOutcome {
  var decoder = BodyDecoder(framing: framing, maxBody: maxBody)
  var outcome = BodyOutcome()
  var offset = 0
  // A body that is empty by its framing is over before any input.
  if case .done = decoder.decode(UnsafeRawBufferPointer(start: nil, count: 0), emit: { _ in }) {
    outcome.end = .done(0)
    return outcome
  }
  for n in plan {
    let piece = input[offset..<(offset + n)]
    let result = withExactCopy(piece) { buffer in
      decoder.decode(buffer) { outcome.body.append(contentsOf: $0) }
    }
    switch result {
    case .progress(let consumed):
      fuzzCheck(
        consumed == n, "body decoder used \(consumed) of \(n) bytes without finishing the body")
    case .done(let consumed):
      fuzzCheck(consumed <= n, "body decoder used \(consumed) of \(n) bytes")
      outcome.end = .done(offset + consumed)
      return outcome
    case .failed(let error):
      outcome.end = .failed(error)
      return outcome
    }
    fuzzCheck(
      decoder.bodyBytesSoFar == UInt64(outcome.body.count),
      "bodyBytesSoFar \(decoder.bodyBytesSoFar) but \(outcome.body.count) bytes emitted")
    offset += n
  }
  return outcome
}

/// Property: the decoded bytes and the verdict do not depend on the split.
@discardableResult
public func checkBody(
  _ input: [UInt8], framing: RequestHead.BodyFraming, maxBody: UInt64, plans: [[Int]]
) -> BodyOutcome {
  let reference = decodeBody(input, framing: framing, maxBody: maxBody, plan: plans[0])
  fuzzCheck(
    UInt64(reference.body.count) <= maxBody,
    "body decoder emitted \(reference.body.count) bytes, more than max-body \(maxBody)")
  for plan in plans.dropFirst() {
    let outcome = decodeBody(input, framing: framing, maxBody: maxBody, plan: plan)
    fuzzCheck(
      outcome == reference,
      """
      body verdict depends on the split (\(framing), max-body \(maxBody))
      input: \(escaped(input))
      whole: \(reference.end), body \(escaped(reference.body))
      split \(plan): \(outcome.end), body \(escaped(outcome.body))
      """)
  }
  return reference
}
