// Upstream response-header handling: `UpstreamHeadReader`, fed one line at a time as curl's header
// callback feeds it, and the framing credproxy computes for the caller from it.
//
// Property: framing is never ambiguous and never copied.
// - A complete head has a final status (200…599, never 101), and its framing is what
//   `UpstreamHeadReader.framing` computes from its fields: a length only when every
//   Content-Length item is that number and no Transfer-Encoding is present; none for HEAD, 204, 304.
// - A head with both Content-Length and Transfer-Encoding, or two different lengths, is refused.
// - Written out again the way credproxy writes a head (`serializeResponseHead`), a complete head
//   reads back to the same status, fields and framing: nothing the reader accepted can change
//   meaning on the next hop.
import FuzzSupport
import HTTP1

@main enum UpstreamHeadFuzz {
  static func main() { runFuzzer(fuzz) }
}

let methods = ["GET", "HEAD", "POST"]

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = fuzzBytes(data, size)
  guard let first = bytes.first else { return 0 }
  let method = methods[Int(first) % methods.count]
  let lines = bytes.dropFirst().split(separator: 0x0A, omittingEmptySubsequences: false)
  var reader = UpstreamHeadReader(requestMethod: method)
  for line in lines {
    let step = Array(line).withUnsafeBytes { reader.take(line: $0) }
    switch step {
    case .more, .interim:
      continue
    case .invalid:
      return 0
    case .complete:
      check(reader, method: method, input: bytes)
      return 0
    }
  }
  return 0
}

func check(_ reader: UpstreamHeadReader, method: String, input: [UInt8]) {
  let shown = escaped(input[...])
  fuzzCheck((200...599).contains(reader.status), "final status \(reader.status) from \(shown)")
  let recomputed = UpstreamHeadReader.framing(
    status: reader.status, requestMethod: method, headers: reader.headers)
  fuzzCheck(recomputed == .success(reader.framing), "framing differs on recompute: \(shown)")
  let hasTE = reader.headers.contains { fieldNameIs($0.name, "transfer-encoding") }
  let lengths = reader.headers.filter { fieldNameIs($0.name, "content-length") }
  fuzzCheck(!(hasTE && !lengths.isEmpty), "CL and TE accepted together: \(shown)")
  switch reader.framing {
  case .length(let n):
    for h in lengths {
      for item in h.value.split(separator: ",", omittingEmptySubsequences: false) {
        let trimmed = item.trimmingCharacters(in: " \t")
        fuzzCheck(UInt64(trimmed) == n, "length \(n) but field says \(h.value): \(shown)")
      }
    }
    fuzzCheck(method != "HEAD" && reader.status != 204 && reader.status != 304, "body on \(shown)")
  case .none:
    fuzzCheck(
      method == "HEAD" || reader.status == 204 || reader.status == 304, "no body for \(shown)")
  case .unknown:
    fuzzCheck(lengths.isEmpty, "lengths ignored: \(shown)")
  }
  // Round trip through the way credproxy writes heads.
  let written = serializeResponseHead(status: reader.status, headers: reader.headers)
  var again = UpstreamHeadReader(requestMethod: method)
  var result = UpstreamHeadReader.Step.more
  for line in written.split(separator: 0x0A, omittingEmptySubsequences: false) {
    result = Array(line).withUnsafeBytes { again.take(line: $0) }
    if result != .more { break }
  }
  fuzzCheck(result == .complete, "re-read of \(shown) gave \(result)")
  fuzzCheck(again.status == reader.status, "status changed on re-read: \(shown)")
  // The writer turns CR, LF and NUL into spaces (no field can split a head); the reader trims
  // blanks around values. Anything else must come through unchanged.
  let expected = reader.headers.map {
    HeaderField(name: sanitised($0.name), value: sanitised($0.value).trimmingCharacters(in: " \t"))
  }
  fuzzCheck(again.headers == expected, "fields changed on re-read: \(shown)")
  fuzzCheck(again.framing == reader.framing, "framing changed on re-read: \(shown)")
}

func sanitised(_ s: String) -> String {
  String(decoding: s.utf8.map { $0 == 13 || $0 == 10 || $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
}

extension StringProtocol {
  /// Trims ASCII bytes in `set` from both ends, on bytes as the reader does (a Character-based
  /// trim would keep a space that a combining mark follows: one grapheme, two code points).
  func trimmingCharacters(in set: String) -> String {
    let trim = Set(set.utf8)
    var bytes = Array(utf8)[...]
    while let f = bytes.first, trim.contains(f) { bytes = bytes.dropFirst() }
    while let l = bytes.last, trim.contains(l) { bytes = bytes.dropLast() }
    return String(decoding: bytes, as: UTF8.self)
  }
}
