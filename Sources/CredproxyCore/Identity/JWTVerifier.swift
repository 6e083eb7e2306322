import CCrypto
import Foundation
import GoogleAuth

/// A public key from an issuer's JWKS, loaded into libcrypto. Immutable after `init`; OpenSSL 3
/// allows read-only use of an `EVP_PKEY` from many threads, and each `verify` makes its own
/// `EVP_MD_CTX`. Hence `@unchecked Sendable`.
final class VerificationKey: @unchecked Sendable {
  enum Kind: Sendable, Equatable {
    /// RSA, for `RS256`.
    case rsa
    /// EC on P-256, for `ES256`.
    case ecP256
  }
  let kid: String?
  let kind: Kind
  /// `EVP_PKEY *`, owned.
  private let key: OpaquePointer

  /// RSA keys shorter than this are refused (RFC 7518 §3.3 requires 2048 bits).
  static let minimumRSABits: Int32 = 2048

  private init(kid: String?, kind: Kind, key: OpaquePointer) {
    self.kid = kid
    self.kind = kind
    self.key = key
  }

  deinit { EVP_PKEY_free(key) }

  /// One JWK (RFC 7517): `kty` RSA with `n`, `e`, or `kty` EC on `crv` P-256 with `x`, `y`.
  /// nil for a key that is not for signatures (`use` other than `sig`), has an `alg` other than
  /// the one its type verifies, or that libcrypto refuses (an EC point not on the curve, a short
  /// RSA modulus).
  static func fromJWK(_ jwk: [String: Any]) -> VerificationKey? {
    if let use = jwk["use"] as? String, use != "sig" { return nil }
    let kid = jwk["kid"] as? String
    let spki: [UInt8]
    let kind: Kind
    switch jwk["kty"] as? String {
    case "RSA":
      if let alg = jwk["alg"] as? String, alg != "RS256" { return nil }
      guard let n = (jwk["n"] as? String).flatMap(Base64URL.decode),
        let e = (jwk["e"] as? String).flatMap(Base64URL.decode), !n.isEmpty, !e.isEmpty
      else { return nil }
      kind = .rsa
      spki = DER.sequence(
        DER.sequence(DER.rsaEncryption + DER.null)
          + DER.bitString(DER.sequence(DER.integer(n) + DER.integer(e))))
    case "EC":
      if let alg = jwk["alg"] as? String, alg != "ES256" { return nil }
      guard jwk["crv"] as? String == "P-256",
        let x = (jwk["x"] as? String).flatMap(Base64URL.decode),
        let y = (jwk["y"] as? String).flatMap(Base64URL.decode), x.count == 32, y.count == 32
      else { return nil }
      kind = .ecP256
      spki = DER.sequence(
        DER.sequence(DER.ecPublicKey + DER.prime256v1) + DER.bitString([0x04] + x + y))
    default:
      return nil
    }
    let loaded: OpaquePointer? = spki.withUnsafeBufferPointer { buffer in
      var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
      return d2i_PUBKEY(nil, &cursor, buffer.count)
    }
    ERR_clear_error()
    guard let loaded else { return nil }
    if kind == .rsa && EVP_PKEY_get_bits(loaded) < minimumRSABits {
      EVP_PKEY_free(loaded)
      return nil
    }
    return VerificationKey(kid: kid, kind: kind, key: loaded)
  }

  /// A JWKS document's usable keys (unusable ones are skipped, as other verifiers do).
  static func parseJWKS(_ body: [UInt8]) -> [VerificationKey] {
    guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
      let keys = object["keys"] as? [[String: Any]]
    else { return [] }
    return keys.compactMap(fromJWK)
  }

  /// Whether `signature` (as carried in a JWS: PKCS#1 v1.5 for RS256, raw `r||s` for ES256) signs
  /// `data` with SHA-256 under this key.
  func verify(_ data: [UInt8], signature raw: [UInt8]) -> Bool {
    var signature = raw
    if kind == .ecP256 {
      // JWS carries ECDSA as two 32-byte big-endian integers; libcrypto wants DER.
      guard raw.count == 64 else { return false }
      signature = DER.sequence(DER.integer(Array(raw[..<32])) + DER.integer(Array(raw[32...])))
    }
    guard let context = EVP_MD_CTX_new() else { return false }
    defer { EVP_MD_CTX_free(context) }
    guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else {
      ERR_clear_error()
      return false
    }
    let status = signature.withUnsafeBufferPointer { sig in
      data.withUnsafeBufferPointer { input in
        EVP_DigestVerify(context, sig.baseAddress, sig.count, input.baseAddress, input.count)
      }
    }
    ERR_clear_error()
    return status == 1
  }
}

/// A JWS compact token taken apart, not yet verified.
struct SignedToken {
  /// `RS256` or `ES256`: the only algorithms accepted. `none`, `HS*` (a shared secret: whoever
  /// holds the public key could forge) and everything else never get this far.
  let alg: String
  let kid: String?
  let claims: [String: Any]
  let signingInput: [UInt8]
  let signature: [UInt8]

  enum Failure: Error, Equatable {
    case malformed
    case algorithm(String)
  }

  static let acceptedAlgorithms = ["RS256", "ES256"]

  static func parse(_ token: String) throws(Failure) -> SignedToken {
    let parts = token.split(separator: ".", omittingEmptySubsequences: false)
    // One spelling per token, one meaning per parser: canonical base64url, no repeated member.
    guard parts.count == 3, let headerBytes = Base64URL.decodeCanonical(parts[0]),
      let payload = Base64URL.decodeCanonical(parts[1]),
      let signature = Base64URL.decodeCanonical(parts[2]),
      let header = JSONReading.objectWithUniqueMembers(headerBytes),
      let claims = JSONReading.objectWithUniqueMembers(payload),
      let alg = header["alg"] as? String,
      // A `kid` that is not a string is not "no kid" (which may pick the issuer's only key).
      header["kid"] == nil || header["kid"] is String
    else { throw .malformed }
    guard acceptedAlgorithms.contains(alg) else { throw .algorithm(alg) }
    // A token that asks for critical extensions we do not implement must be refused (RFC 7515).
    if header["crit"] != nil { throw .malformed }
    return SignedToken(
      alg: alg, kid: header["kid"] as? String, claims: claims,
      signingInput: Array(parts[0].utf8) + [UInt8(ascii: ".")] + Array(parts[1].utf8),
      signature: signature)
  }

  /// The key type this token's algorithm needs: a key of another type never verifies it.
  var keyKind: VerificationKey.Kind { alg == "ES256" ? .ecP256 : .rsa }

  /// The keys that may have signed this token: those its `kid` names (of the right type), or,
  /// without a `kid`, the issuer's only key of the right type. With several, a token without a
  /// `kid` does not say which signed it: none (as jose refuses it), rather than trying each.
  func candidates(in keys: [VerificationKey]) -> [VerificationKey] {
    let typed = keys.filter { $0.kind == keyKind }
    guard let kid else { return typed.count == 1 ? typed : [] }
    return typed.filter { $0.kid == kid }
  }

  /// Verified by one of its `candidates` in `keys`.
  func verified(by keys: [VerificationKey]) -> Bool {
    candidates(in: keys).contains { $0.verify(signingInput, signature: signature) }
  }

  /// Whether `keys` has a key for this token. False means the issuer's keys may have rotated.
  func hasCandidate(in keys: [VerificationKey]) -> Bool { !candidates(in: keys).isEmpty }
}

/// The few DER forms a SubjectPublicKeyInfo and an ECDSA signature need.
enum DER {
  static let rsaEncryption: [UInt8] = [
    0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
  ]
  static let ecPublicKey: [UInt8] = [0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]
  static let prime256v1: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
  static let null: [UInt8] = [0x05, 0x00]

  static func length(_ n: Int) -> [UInt8] {
    if n < 0x80 { return [UInt8(n)] }
    var bytes: [UInt8] = []
    var v = n
    while v > 0 {
      bytes.insert(UInt8(v & 0xFF), at: 0)
      v >>= 8
    }
    return [0x80 | UInt8(bytes.count)] + bytes
  }

  static func tagged(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
    [tag] + length(content.count) + content
  }

  static func sequence(_ content: [UInt8]) -> [UInt8] { tagged(0x30, content) }

  static func bitString(_ content: [UInt8]) -> [UInt8] { tagged(0x03, [0x00] + content) }

  /// A non-negative INTEGER from big-endian bytes: leading zeros dropped, a zero byte added
  /// when the top bit is set.
  static func integer(_ bigEndian: [UInt8]) -> [UInt8] {
    var bytes = Array(bigEndian.drop { $0 == 0 })
    if bytes.isEmpty { bytes = [0] }
    if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
    return tagged(0x02, bytes)
  }
}
