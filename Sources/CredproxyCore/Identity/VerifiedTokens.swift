import GoogleAuth

/// OIDC proxy tokens whose signature this loop has verified, so that a runner's keep-alive
/// requests (each carrying the same `Proxy-Authorization`) are not each decoded and verified
/// again: that costs hundreds of µs, several times the rest of a request. Only the signature
/// check is remembered, and only while the issuer's key set it was verified with is the one
/// loaded (a JWKS fetch that loads new keys verifies every token again); time, audience and
/// claims are matched against the current config on every request. Owned by one loop's
/// `LoopContext` and used only on its thread (no lock).
final class VerifiedTokens {
  struct Known {
    let token: SignedToken
    let issuer: String
  }

  private struct Entry {
    let known: Known
    /// The issuer's key-set generation (IssuerKeys) the signature was verified with.
    let keys: Int
    let until: Double
  }

  /// Keyed by the token's SHA-256, so a remembered token costs 32 bytes of key, however long.
  private var entries: [[UInt8]: Entry] = [:]
  let capacity: Int
  /// A key the issuer withdrew stops vouching for tokens verified with it within this time
  /// (the JWKS itself is kept up to `IssuerKeys.maxAge`).
  static let maxAge = 300.0

  init(capacity: Int = 1024) { self.capacity = capacity }

  static func digest(_ token: String) -> [UInt8] { sha256(Array(token.utf8)) }

  /// The token verified earlier under `digest`, while remembered and while `keys` says its
  /// issuer's key set is still the one it was verified with.
  func verified(_ digest: [UInt8], now: Double, keys: (String) -> Int) -> Known? {
    guard let entry = entries[digest] else { return nil }
    guard now < entry.until, keys(entry.known.issuer) == entry.keys else {
      entries[digest] = nil
      return nil
    }
    return entry.known
  }

  /// Remembers a token whose signature verified, until `maxAge` or its own `exp` (plus skew).
  func remember(
    _ digest: [UInt8], _ token: SignedToken, issuer: String, keys: Int, exp: Double?, now: Double
  ) {
    if entries.count >= capacity {
      entries = entries.filter { now < $0.value.until }
      // Still full of live tokens: start over rather than grow (bounded memory first).
      if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
    }
    var until = now + Self.maxAge
    if let exp { until = min(until, exp + 60) }
    entries[digest] = Entry(known: Known(token: token, issuer: issuer), keys: keys, until: until)
  }

  var count: Int { entries.count }
}
