// The request-head parser, then the body decoder on the bytes after the head, as a connection
// runs them, each fed in several splits.
//
// Property: the verdict does not depend on how the bytes are split into feeds. The head parser
// gives the same result (the same head and consumed count, needMore, or the same failure) for
// every split and under default and tiny limits alike; a complete head ends with CRLF CRLF and
// parses the same without the bytes that follow it; its authority is canonical (parsing its
// printed form gives it back). The body after it decodes to the same bytes and verdict for every
// split.
import FuzzSupport
import HTTP1

/// Small limits, so that the 414 and 431 paths are reached with short inputs.
let tinyLimits: HTTPLimits = {
  var limits = HTTPLimits()
  limits.maxRequestLine = 64
  limits.maxHeaderBytes = 256
  limits.maxHeaderCount = 4
  return limits
}()

@main enum RequestHeadFuzz {
  static func main() { runFuzzer(fuzz) }
}

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = fuzzBytes(data, size)
  let plans = splitPlans(bytes)
  checkHead(bytes, plans: plans, limits: tinyLimits)
  if case .complete(let head, let consumed) = checkHead(bytes, plans: plans, limits: HTTPLimits()) {
    let body = Array(bytes[consumed...])
    checkBody(body, framing: head.framing, maxBody: 1 << 20, plans: splitPlans(body))
  }
  return 0
}

/// Feeds the growing buffer to one parser, `plan` bytes more each time, as the connection does.
/// One byte at a time, the feeds are slices of one buffer; otherwise each feed is an exact-size
/// copy, so that a read past what was fed is caught.
func parseHead(_ bytes: [UInt8], plan: [Int], limits: HTTPLimits) -> HeadParseResult {
  var parser = RequestHeadParser(limits: limits)
  var available = 0
  let byteByByte = plan.count > 1 && plan.allSatisfy { $0 == 1 }
  for n in plan {
    available += n
    let result: HeadParseResult
    if byteByByte {
      result = bytes.withUnsafeBytes {
        parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<available]))
      }
    } else {
      result = withExactCopy(bytes[0..<available]) { parser.parse($0) }
    }
    if case .needMore = result { continue }
    return result
  }
  return .needMore
}

@discardableResult
func checkHead(_ bytes: [UInt8], plans: [[Int]], limits: HTTPLimits) -> HeadParseResult {
  let reference = parseHead(bytes, plan: plans[0], limits: limits)
  for plan in plans.dropFirst() {
    let result = parseHead(bytes, plan: plan, limits: limits)
    fuzzCheck(
      result == reference,
      """
      request head verdict depends on the split
      input: \(escaped(bytes))
      whole: \(reference)
      split \(plan): \(result)
      """)
  }
  guard case .complete(let head, let consumed) = reference else { return reference }
  fuzzCheck(
    consumed >= 4 && consumed <= bytes.count
      && bytes[(consumed - 4)..<consumed].elementsEqual([13, 10, 13, 10]),
    "complete head of \(consumed) bytes does not end with CRLF CRLF: \(escaped(bytes))")
  let alone = parseHead(Array(bytes[0..<consumed]), plan: [consumed], limits: limits)
  fuzzCheck(
    alone == reference,
    """
    head parses differently without the bytes after it
    input: \(escaped(bytes))
    with: \(reference)
    without: \(alone)
    """)
  if let authority = head.authority {
    let again = Authority.parse(Substring(authority.description))
    fuzzCheck(
      again == authority,
      "authority \(authority) prints as \(authority.description), which parses as \(String(describing: again))"
    )
  }
  return reference
}
