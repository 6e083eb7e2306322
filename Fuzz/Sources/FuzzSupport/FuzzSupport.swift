// What every fuzz target needs: a `main` that runs libFuzzer, the input as bytes, deterministic ways to split it into feeds,
// and a check that stops the fuzzer with a clear message when a property does not hold.

import CFuzzerDriver

#if canImport(Glibc)
  import Glibc
#endif

/// One fuzz input: `LLVMFuzzerTestOneInput`'s signature. Return 0.
public typealias FuzzTestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// Runs libFuzzer (its command line is this program's) on `testOneInput`; call from `main`.
public func runFuzzer(_ testOneInput: FuzzTestOneInput) -> Never {
  var argc = CommandLine.argc
  var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
  exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// Stops the run (libFuzzer saves the input as a crash artifact) when `condition` is false.
/// Use for properties, not for "no crash": a trap is already a finding.
public func fuzzCheck(
  _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
  file: StaticString = #fileID, line: UInt = #line
) {
  if condition() { return }
  fatalError("fuzz property violated:\n\(message())\n", file: file, line: line)
}

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`, copied into an array.
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
  guard let data, size > 0 else { return [] }
  return Array(UnsafeBufferPointer(start: data, count: size))
}

/// A deterministic generator (SplitMix64), seeded from the input so that a saved artifact
/// reproduces the same splits.
public struct FuzzRandom: RandomNumberGenerator {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public init(hashing bytes: [UInt8], salt: UInt64 = 0) {
    // FNV-1a.
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ salt
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    state = h
  }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Ways to feed `count` bytes, as piece sizes that add up to `count`: all at once, one byte at a
/// time, and `random` random splits (a few cuts each, seeded from the input). An empty input has
/// no pieces.
public func splitPlans(_ bytes: [UInt8], random: Int = 2) -> [[Int]] {
  let count = bytes.count
  guard count > 0 else { return [[]] }
  var plans: [[Int]] = [[count], Array(repeating: 1, count: count)]
  var rng = FuzzRandom(hashing: bytes)
  for _ in 0..<random {
    let cuts = Int.random(in: 1...8, using: &rng)
    var points = Set<Int>()
    for _ in 0..<cuts { points.insert(Int.random(in: 0...count, using: &rng)) }
    var plan: [Int] = []
    var last = 0
    for p in points.sorted() + [count] where p > last {
      plan.append(p - last)
      last = p
    }
    plans.append(plan)
  }
  return plans
}

/// Calls `body` with a copy of `bytes` in an allocation of exactly that size, so that the
/// address sanitizer catches a read past the end.
public func withExactCopy<R>(
  _ bytes: ArraySlice<UInt8>, _ body: (UnsafeRawBufferPointer) -> R
) -> R {
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
  defer { buffer.deallocate() }
  buffer.copyBytes(from: bytes)
  return body(UnsafeRawBufferPointer(buffer))
}

/// Bytes for messages: printable ASCII as is, the rest escaped.
public func escaped<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
  var out = ""
  for b in bytes.prefix(2000) {
    switch b {
    case 0x0D: out += "\\r"
    case 0x0A: out += "\\n"
    case 0x5C: out += "\\\\"
    case 0x20...0x7E: out.unicodeScalars.append(Unicode.Scalar(b))
    default: out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
    }
  }
  return out
}
