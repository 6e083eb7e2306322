import CCrypto
import Glibc

/// Why the local CA could not be created, loaded, written or used; names the file and the cause.
public struct LocalCAError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public var description: String { message }
  public init(_ message: String) { self.message = message }
}

/// Small wrappers over libcrypto calls that Swift cannot express directly. Every function that
/// returns an OpenSSL object returns an owned one (the caller frees it).
enum SSLSupport {
  /// The oldest error on this thread's OpenSSL error queue, as text; clears the queue.
  static func lastError() -> String {
    let code = ERR_get_error()
    ERR_clear_error()
    guard code != 0 else { return "unknown OpenSSL error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return string(buf)
  }

  /// A NUL-terminated C string in a buffer.
  static func string(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// A new ECDSA P-256 key.
  static func newP256Key() throws(LocalCAError) -> OpaquePointer {
    guard let key = cp_ec_p256_keygen() else {
      throw LocalCAError("cannot generate an ECDSA P-256 key: \(lastError())")
    }
    return key
  }

  /// A random positive 128-bit serial number, set on `cert`.
  static func setRandomSerial(_ cert: OpaquePointer) throws(LocalCAError) {
    var bytes = [UInt8](repeating: 0, count: 16)
    guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else {
      throw LocalCAError("cannot draw a random serial number: \(lastError())")
    }
    // Positive, and exactly 16 bytes long (never a short or zero serial).
    bytes[0] = (bytes[0] & 0x7f) | 0x40
    guard let bn = BN_bin2bn(bytes, Int32(bytes.count), nil) else {
      throw LocalCAError("cannot build a serial number: \(lastError())")
    }
    defer { BN_free(bn) }
    guard let serial = BN_to_ASN1_INTEGER(bn, nil) else {
      throw LocalCAError("cannot build a serial number: \(lastError())")
    }
    defer { ASN1_INTEGER_free(serial) }
    guard X509_set_serialNumber(cert, serial) == 1 else {
      throw LocalCAError("cannot set the serial number: \(lastError())")
    }
  }

  /// Adds one X.509 v3 extension written in OpenSSL's config syntax, e.g.
  /// `critical,CA:TRUE,pathlen:0`. `issuer` and `subject` give the key identifiers their keys.
  static func addExtension(
    _ cert: OpaquePointer, nid: Int32, _ value: String, issuer: OpaquePointer
  ) throws(LocalCAError) {
    var ctx = X509V3_CTX()
    X509V3_set_ctx(&ctx, issuer, cert, nil, nil, 0)
    guard let ext = X509V3_EXT_nconf_nid(nil, &ctx, nid, value) else {
      throw LocalCAError(
        "cannot build the \(String(cString: OBJ_nid2sn(nid))) extension \"\(value)\": \(lastError())"
      )
    }
    defer { X509_EXTENSION_free(ext) }
    guard X509_add_ext(cert, ext, -1) == 1 else {
      throw LocalCAError("cannot add an extension: \(lastError())")
    }
  }

  /// Adds `NAME=value` entries to a name, in order.
  static func name(_ entries: [(String, String)]) throws(LocalCAError) -> OpaquePointer {
    guard let name = X509_NAME_new() else { throw LocalCAError("out of memory") }
    for (field, value) in entries {
      let ok = value.withCString { v in
        X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, v, -1, -1, 0)
      }
      if ok != 1 {
        X509_NAME_free(name)
        throw LocalCAError("cannot set \(field)=\(value) in a certificate name: \(lastError())")
      }
    }
    return name
  }

  /// notBefore = now + `from`, notAfter = now + `to` (seconds).
  static func setValidity(_ cert: OpaquePointer, from: Int, to: Int) throws(LocalCAError) {
    guard X509_gmtime_adj(X509_getm_notBefore(cert), from) != nil,
      X509_gmtime_adj(X509_getm_notAfter(cert), to) != nil
    else { throw LocalCAError("cannot set the validity period: \(lastError())") }
  }

  /// Seconds since the epoch of an ASN1_TIME (notBefore / notAfter).
  static func epochSeconds(_ t: UnsafePointer<ASN1_TIME>?) -> Int? {
    guard let t else { return nil }
    var tm = Glibc.tm()
    guard ASN1_TIME_to_tm(t, &tm) == 1 else { return nil }
    return Int(timegm(&tm))
  }

  /// The PEM text a BIO writer produces (not for private keys: a String cannot be wiped).
  static func pem(_ write: (OpaquePointer) -> Int32) throws(LocalCAError) -> String {
    var bytes = try pemBytes(write)
    defer { cleanse(&bytes) }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// The bytes a BIO writer produces; wipe them with `cleanse` when they hold a key.
  static func pemBytes(_ write: (OpaquePointer) -> Int32) throws(LocalCAError) -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else { throw LocalCAError("out of memory") }
    defer { BIO_free(bio) }
    guard write(bio) == 1 else { throw LocalCAError("cannot encode PEM: \(lastError())") }
    var bytes = [UInt8](repeating: 0, count: Int(BIO_ctrl_pending(bio)))
    let n = BIO_read(bio, &bytes, Int32(bytes.count))
    if Int(n) < bytes.count { bytes.removeLast(bytes.count - Int(max(n, 0))) }
    return bytes
  }

  /// Overwrites `bytes` with zeros (OPENSSL_cleanse: not optimised away).
  static func cleanse(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buf in
      if let base = buf.baseAddress { OPENSSL_cleanse(base, buf.count) }
    }
  }

  /// Runs `body` with a read-only memory BIO over `bytes`.
  static func withMemoryBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) -> T?) -> T? {
    bytes.withUnsafeBytes { buf -> T? in
      guard let bio = BIO_new_mem_buf(buf.baseAddress, Int32(buf.count)) else { return nil }
      defer { BIO_free(bio) }
      return body(bio)
    }
  }

  /// An IP literal's canonical text, or nil for anything else (`[::1]` is `::1`).
  static func ipLiteral(_ host: String) -> (text: String, isV6: Bool)? {
    var h = Substring(host)
    if h.hasPrefix("[") && h.hasSuffix("]") { h = h.dropFirst().dropLast() }
    var v4 = in_addr()
    if inet_pton(AF_INET, String(h), &v4) == 1 {
      var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
      inet_ntop(AF_INET, &v4, &buf, socklen_t(buf.count))
      return (string(buf), false)
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, String(h), &v6) == 1 {
      var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
      inet_ntop(AF_INET6, &v6, &buf, socklen_t(buf.count))
      return (string(buf), true)
    }
    return nil
  }

  /// A DNS name as it may appear in a certificate: lowercase letters, digits, `-`, `_` and dots
  /// between non-empty labels of at most 63 characters, 253 in all; a trailing dot is dropped.
  /// nil for anything else (which also keeps `,` and `:` out of extension text).
  static func dnsName(_ host: String) -> String? {
    var h = host.lowercased()
    if h.hasSuffix(".") { h.removeLast() }
    guard !h.isEmpty, h.utf8.count <= 253 else { return nil }
    for label in h.split(separator: ".", omittingEmptySubsequences: false) {
      guard !label.isEmpty, label.utf8.count <= 63,
        label.utf8.allSatisfy({ c in
          (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f
        })
      else { return nil }
    }
    return h
  }
}
