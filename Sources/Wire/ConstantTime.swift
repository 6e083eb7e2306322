/// Comparing secrets without an early exit, so that a wrong guess does not leak by timing how
/// much of it was right.
public enum ConstantTime {
  /// `secret == candidate` as bytes, in time that depends only on `secret`'s length.
  public static func equal(_ secret: [UInt8], _ candidate: [UInt8]) -> Bool {
    var diff: UInt8 = secret.count == candidate.count ? 0 : 1
    let n = candidate.count
    for i in 0..<secret.count {
      let c: UInt8 = n == 0 ? 0 : candidate[i % n]
      diff |= secret[i] ^ c
    }
    return diff == 0
  }

  /// The same, on the UTF-8 bytes of two strings.
  public static func equal(_ secret: String, _ candidate: String) -> Bool {
    equal(Array(secret.utf8), Array(candidate.utf8))
  }
}
