import CCrypto
import Foundation

/// A failure to load a private key or to sign. Messages carry OpenSSL's reason strings, never key
/// bytes.
public struct SigningError: Error, Sendable, Equatable, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWT `RS256`) using libcrypto.
///
/// Thread safety: the key is loaded once and never modified afterwards; OpenSSL 3 allows an
/// `EVP_PKEY` to be used read-only from many threads at once, and every `sign` call creates and
/// frees its own `EVP_MD_CTX`. `init` signs once, so any lazily built provider-side key cache is
/// populated before the signer is shared. Hence `@unchecked Sendable`.
public final class RSASigner: @unchecked Sendable {
  /// `EVP_PKEY *`, owned; freed in `deinit`.
  private let key: OpaquePointer
  /// Modulus size in bits.
  public let bits: Int

  /// Loads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
  /// Encrypted keys are rejected (never prompts for a passphrase).
  public init(pem: String) throws {
    guard pem.contains("-----BEGIN") else { throw SigningError("not a PEM private key") }
    if pem.contains("ENCRYPTED") {
      throw SigningError("encrypted (passphrase-protected) private keys are not supported")
    }
    ERR_clear_error()
    let bytes = Array(pem.utf8)
    // BIO_new_mem_buf does not copy: the BIO lives only inside this closure, while `bytes` is pinned.
    let loaded: OpaquePointer? = bytes.withUnsafeBufferPointer { buffer in
      guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
      defer { BIO_free(bio) }
      return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in -1 }, nil)
    }
    guard let loaded else {
      throw SigningError("cannot read the PEM private key: \(RSASigner.drainErrors())")
    }
    guard EVP_PKEY_get_base_id(loaded) == EVP_PKEY_RSA else {
      EVP_PKEY_free(loaded)
      throw SigningError("the private key is not an RSA key (RS256 needs RSA)")
    }
    key = loaded
    bits = Int(EVP_PKEY_get_bits(loaded))
    // Self-test; also warms any per-key caches before concurrent use.
    _ = try sign(Array("credproxy".utf8))
  }

  deinit { EVP_PKEY_free(key) }

  /// The RS256 signature of `data` (SHA-256 digest, PKCS#1 v1.5 padding; deterministic).
  public func sign(_ data: [UInt8]) throws -> [UInt8] {
    guard let context = EVP_MD_CTX_new() else { throw SigningError("EVP_MD_CTX_new failed") }
    defer { EVP_MD_CTX_free(context) }
    guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1 else {
      throw SigningError("EVP_DigestSignInit failed: \(RSASigner.drainErrors())")
    }
    return try data.withUnsafeBufferPointer { input -> [UInt8] in
      var length = 0
      guard EVP_DigestSign(context, nil, &length, input.baseAddress, input.count) == 1, length > 0
      else { throw SigningError("EVP_DigestSign (length) failed: \(RSASigner.drainErrors())") }
      var signature = [UInt8](repeating: 0, count: length)
      let status = signature.withUnsafeMutableBufferPointer { output in
        EVP_DigestSign(context, output.baseAddress, &length, input.baseAddress, input.count)
      }
      guard status == 1 else {
        throw SigningError("EVP_DigestSign failed: \(RSASigner.drainErrors())")
      }
      signature.removeSubrange(length...)
      return signature
    }
  }

  /// Empties this thread's OpenSSL error queue into one line.
  static func drainErrors() -> String {
    var reasons: [String] = []
    while true {
      let code = ERR_get_error()
      if code == 0 { break }
      var buffer = [CChar](repeating: 0, count: 256)
      ERR_error_string_n(code, &buffer, buffer.count)
      reasons.append(
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return reasons.isEmpty ? "unknown OpenSSL error" : reasons.joined(separator: "; ")
  }
}

/// SHA-256 of `bytes` via libcrypto.
public func sha256(_ bytes: [UInt8]) -> [UInt8] {
  var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
  var length: UInt32 = 0
  let status = bytes.withUnsafeBufferPointer { input in
    EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha256(), nil)
  }
  precondition(status == 1 && length == 32, "EVP_Digest(SHA-256) failed")
  return Array(digest.prefix(Int(length)))
}

/// A token's fingerprint for logs and status pages: the first 12 hex digits of its SHA-256.
/// Identifies a token without revealing it.
public func fingerprint(_ token: String) -> String {
  let hex = Array("0123456789abcdef".utf8)
  var out: [UInt8] = []
  for byte in sha256(Array(token.utf8)).prefix(6) {
    out.append(hex[Int(byte >> 4)])
    out.append(hex[Int(byte & 0x0F)])
  }
  return String(decoding: out, as: UTF8.self)
}
