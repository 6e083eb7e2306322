import CCrypto
import Glibc

/// A name the local CA may issue for, written into its certificate as an X.509 name constraint
/// (RFC 5280 §4.2.1.10, as OpenSSL matches it).
public enum PermittedName: Sendable, Hashable, CustomStringConvertible {
  /// `DNS:name`: the name itself and, by RFC 5280's rule, every name under it.
  case dns(String)
  /// `DNS:.suffix`: names under `suffix` only (what a route's `*.suffix` matches), not `suffix`.
  case subdomains(of: String)
  /// `IP:address/all-ones mask`: exactly that IPv4 or IPv6 address.
  case ip(String)

  /// As OpenSSL's config syntax writes it (`permitted;DNS:.googleapis.com`).
  var extensionText: String {
    switch self {
    case .dns(let name): return "permitted;DNS:\(name)"
    case .subdomains(let suffix): return "permitted;DNS:.\(suffix)"
    case .ip(let address):
      let mask =
        address.contains(":")
        ? "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" : "255.255.255.255"
      return "permitted;IP:\(address)/\(mask)"
    }
  }

  /// `DNS:.googleapis.com`, `IP:10.0.0.1`.
  public var description: String {
    switch self {
    case .dns(let name): return "DNS:\(name)"
    case .subdomains(let suffix): return "DNS:.\(suffix)"
    case .ip(let address): return "IP:\(address)"
    }
  }

  /// Checked and canonical: a DNS name (or suffix) as certificates write it, an IP address in its
  /// canonical text. Anything else (which could smuggle `,` into the extension) is an error.
  func validated() throws(LocalCAError) -> PermittedName {
    switch self {
    case .dns(let name):
      guard let n = SSLSupport.dnsName(name) else {
        throw LocalCAError("\"\(name)\" is not a DNS name a certificate can constrain")
      }
      return .dns(n)
    case .subdomains(let suffix):
      guard let n = SSLSupport.dnsName(suffix) else {
        throw LocalCAError("\"*.\(suffix)\" is not a DNS name a certificate can constrain")
      }
      return .subdomains(of: n)
    case .ip(let address):
      guard let ip = SSLSupport.ipLiteral(address) else {
        throw LocalCAError("\"\(address)\" is not an IP address")
      }
      return .ip(ip.text)
    }
  }
}

/// credproxy's local certificate authority: an ECDSA P-256 key and a self-signed CA certificate
/// (`CA:true, pathlen:0`, `keyCertSign, cRLSign`, optionally name-constrained), and the leaves it
/// signs for intercepted hosts.
///
/// Ownership: the instance owns one reference to the CA certificate (`X509*`), the CA key and the
/// leaf key (`EVP_PKEY*`), freed in `deinit`. A `Leaf` takes its own references, so leaves outlive
/// the CA that made them safely. Immutable after construction and safe to share between threads:
/// OpenSSL allows concurrent signing with one key, and the certificate's extension cache is
/// filled before the instance is published.
///
/// The private key is never printed, logged or part of any description; it leaves the process
/// only through `write(certPath:keyPath:force:)`, into a file created with mode 0600.
public final class LocalCA: @unchecked Sendable {
  /// The CA certificate (`X509*`), owned by this instance. Borrow it; up-ref it to keep it.
  public let certificate: OpaquePointer
  /// The CA key (`EVP_PKEY*`), owned.
  let key: OpaquePointer
  /// The key every leaf of this instance certifies (`EVP_PKEY*`), owned. Made fresh for each
  /// instance (never written by the proxy): one ECDSA key generation per process instead of one
  /// per host, so a mint is a signature and a TLS context; the leaves' keys live in the same
  /// process as the CA key, so one key per leaf would not narrow what a memory leak exposes.
  let leafKey: OpaquePointer
  /// The CA certificate in PEM.
  public let certificatePEM: String
  /// The subject, e.g. `CN=credproxy local CA (build-7)`.
  public let subject: String
  /// Validity, seconds since the epoch.
  public let notBefore: Int
  public let notAfter: Int
  /// The name constraints in the certificate as OpenSSL prints them (`Permitted: DNS:.x, …`);
  /// nil when the certificate has none (the CA can sign for any name).
  public let nameConstraints: String?

  /// Takes ownership of `certificate` and `key`.
  init(certificate: OpaquePointer, key: OpaquePointer) throws(LocalCAError) {
    self.certificate = certificate
    self.key = key
    do {
      leafKey = try SSLSupport.newP256Key()
    } catch {
      X509_free(certificate)
      EVP_PKEY_free(key)
      throw error
    }
    // Fill the certificate's extension cache now, while no other thread can see it.
    _ = X509_check_purpose(certificate, -1, 0)
    certificatePEM = (try? SSLSupport.pem { PEM_write_bio_X509($0, certificate) }) ?? ""
    subject = Self.nameText(X509_get_subject_name(certificate))
    notBefore = SSLSupport.epochSeconds(X509_get0_notBefore(certificate)) ?? 0
    notAfter = SSLSupport.epochSeconds(X509_get0_notAfter(certificate)) ?? 0
    nameConstraints = Self.extensionText(certificate, nid: NID_name_constraints)
  }

  deinit {
    X509_free(certificate)
    EVP_PKEY_free(key)
    EVP_PKEY_free(leafKey)
  }

  // MARK: - Creating

  /// A new CA: a fresh ECDSA P-256 key and a self-signed certificate with a random 128-bit
  /// serial, valid from an hour ago for `validityDays`. `permitted` nil or empty: no name
  /// constraints; otherwise a critical nameConstraints extension permitting exactly those names.
  public static func create(
    commonName: String, permitted: [PermittedName]? = nil, validityDays: Int = 3650
  ) throws(LocalCAError) -> LocalCA {
    var names: [PermittedName] = []
    for p in permitted ?? [] {
      let v = try p.validated()
      if !names.contains(v) { names.append(v) }
    }
    let key = try SSLSupport.newP256Key()
    guard let cert = X509_new() else {
      EVP_PKEY_free(key)
      throw LocalCAError("out of memory")
    }
    do throws(LocalCAError) {
      guard X509_set_version(cert, 2) == 1 else { throw LocalCAError(SSLSupport.lastError()) }
      try SSLSupport.setRandomSerial(cert)
      let name = try SSLSupport.name([("O", "credproxy"), ("CN", commonName)])
      defer { X509_NAME_free(name) }
      guard X509_set_subject_name(cert, name) == 1, X509_set_issuer_name(cert, name) == 1,
        X509_set_pubkey(cert, key) == 1
      else { throw LocalCAError("cannot build the CA certificate: \(SSLSupport.lastError())") }
      try SSLSupport.setValidity(cert, from: -3600, to: validityDays * 86_400)
      try SSLSupport.addExtension(
        cert, nid: NID_basic_constraints, "critical,CA:TRUE,pathlen:0", issuer: cert)
      try SSLSupport.addExtension(
        cert, nid: NID_key_usage, "critical,keyCertSign,cRLSign", issuer: cert)
      try SSLSupport.addExtension(cert, nid: NID_subject_key_identifier, "hash", issuer: cert)
      if !names.isEmpty {
        let text = "critical," + names.map(\.extensionText).joined(separator: ",")
        try SSLSupport.addExtension(cert, nid: NID_name_constraints, text, issuer: cert)
      }
      guard X509_sign(cert, key, EVP_sha256()) > 0 else {
        throw LocalCAError("cannot sign the CA certificate: \(SSLSupport.lastError())")
      }
    } catch {
      X509_free(cert)
      EVP_PKEY_free(key)
      throw error
    }
    return try LocalCA(certificate: cert, key: key)
  }

  /// `credproxy local CA (HOSTNAME)`.
  public static func defaultCommonName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    let host = gethostname(&buf, buf.count - 1) == 0 ? SSLSupport.string(buf) : ""
    // Keep the name within X.509's 64-character limit for a common name.
    let trimmed = String(host.prefix(40))
    return trimmed.isEmpty ? "credproxy local CA" : "credproxy local CA (\(trimmed))"
  }

  // MARK: - Files

  /// Writes the key (PKCS#8 PEM, mode 0600 from creation: `O_CREAT|O_EXCL`, never widened) and
  /// the certificate (PEM, mode 0644), creating missing directories. Refuses when either file
  /// exists unless `force`, in which case the old files are removed first.
  public func write(certPath: String, keyPath: String, force: Bool) throws(LocalCAError) {
    if !force {
      for path in [keyPath, certPath] where Files.exists(path) {
        throw LocalCAError(
          "\(path) already exists: credproxy never replaces a CA silently (clients that trust it would stop working); pass --force to replace it"
        )
      }
    }
    for path in [keyPath, certPath] {
      try Files.makeParentDirectories(of: path)
      if force && Files.exists(path) && unlink(path) != 0 {
        throw LocalCAError("cannot remove \(path): \(Files.errnoText())")
      }
    }
    var keyBytes = try SSLSupport.pemBytes {
      PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil)
    }
    defer { SSLSupport.cleanse(&keyBytes) }
    try Files.createExclusive(keyPath, mode: 0o600, contents: keyBytes)
    do {
      try Files.createExclusive(certPath, mode: 0o644, contents: Array(certificatePEM.utf8))
    } catch {
      unlink(keyPath)
      throw error
    }
  }

  /// Loads an existing CA (`ca-cert`, `ca-key`): both PEM; the key unencrypted. Errors name the
  /// file and the cause: unreadable, not PEM, key and certificate do not match, not a CA (no
  /// `CA:TRUE`, or a key usage without `keyCertSign`), expired.
  public static func load(certPath: String, keyPath: String) throws(LocalCAError) -> LocalCA {
    let certBytes = try Files.read(certPath, what: "CA certificate (ca-cert)")
    guard let cert = SSLSupport.withMemoryBIO(certBytes, { PEM_read_bio_X509($0, nil, nil, nil) })
    else {
      throw LocalCAError(
        "CA certificate \(certPath) (ca-cert): not a PEM certificate (\(SSLSupport.lastError()))")
    }
    var keyBytes: [UInt8]
    do {
      keyBytes = try Files.read(keyPath, what: "CA key (ca-key)")
    } catch {
      X509_free(cert)
      throw error
    }
    defer { SSLSupport.cleanse(&keyBytes) }
    // No passphrase prompt: an encrypted key fails here instead of waiting on a terminal.
    let noPassword:
      @convention(c) (
        UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?
      ) -> Int32 = { _, _, _, _ in -1 }
    guard
      let key = SSLSupport.withMemoryBIO(
        keyBytes, { PEM_read_bio_PrivateKey($0, nil, noPassword, nil) })
    else {
      X509_free(cert)
      ERR_clear_error()
      throw LocalCAError(
        "CA key \(keyPath) (ca-key): not an unencrypted PEM private key (encrypted keys are not supported)"
      )
    }
    func fail(_ message: String) -> LocalCAError {
      X509_free(cert)
      EVP_PKEY_free(key)
      ERR_clear_error()
      return LocalCAError(message)
    }
    guard X509_check_private_key(cert, key) == 1 else {
      throw fail("CA key \(keyPath) does not match the CA certificate \(certPath)")
    }
    guard X509_check_ca(cert) == 1 else {
      throw fail(
        "CA certificate \(certPath) is not a CA: it lacks basicConstraints CA:TRUE; expected a certificate made by `credproxy ca init`"
      )
    }
    if X509_get_extension_flags(cert) & UInt32(EXFLAG_KUSAGE) != 0
      && X509_get_key_usage(cert) & UInt32(KU_KEY_CERT_SIGN) == 0
    {
      throw fail(
        "CA certificate \(certPath) may not sign certificates: its key usage lacks keyCertSign")
    }
    if let end = SSLSupport.epochSeconds(X509_get0_notAfter(cert)), end <= time(nil) {
      throw fail(
        "CA certificate \(certPath) expired on \(Self.dateText(end)); make a new CA (credproxy ca init --force) and distribute it"
      )
    }
    return try LocalCA(certificate: cert, key: key)
  }

  // MARK: - Leaves

  /// Signs a leaf for `host` (a DNS name or an IP literal): the instance's leaf key, a random
  /// 128-bit serial, valid from an hour before `now` for `lifetime` seconds (never past the CA's
  /// own expiry), SAN dNSName or iPAddress, `CA:FALSE`, digitalSignature, serverAuth, AKI = the
  /// CA's SKI and the leaf's own SKI. Pure CPU: no I/O. A host outside the CA's name constraints
  /// still gets a leaf (clients then reject it; `verify()` says so).
  public func leaf(for host: String, now: Int? = nil, lifetime: Int = 7 * 86_400)
    throws(LocalCAError) -> Leaf
  {
    let start = now ?? Int(time(nil))
    let san: String
    var subject: [(String, String)] = [("O", "credproxy intercept")]
    let canonical: String
    if let ip = SSLSupport.ipLiteral(host) {
      // No CN for an address: OpenSSL would check an IP-looking CN against DNS constraints.
      canonical = ip.text
      san = "IP:\(ip.text)"
    } else if let name = SSLSupport.dnsName(host) {
      canonical = name
      san = "DNS:\(name)"
      if name.utf8.count <= 64 { subject.append(("CN", name)) }
    } else {
      throw LocalCAError("cannot mint a certificate for \"\(host)\": not a DNS name or IP address")
    }
    guard let cert = X509_new() else { throw LocalCAError("out of memory") }
    do throws(LocalCAError) {
      guard X509_set_version(cert, 2) == 1 else { throw LocalCAError(SSLSupport.lastError()) }
      try SSLSupport.setRandomSerial(cert)
      let name = try SSLSupport.name(subject)
      defer { X509_NAME_free(name) }
      guard X509_set_subject_name(cert, name) == 1,
        X509_set_issuer_name(cert, X509_get_subject_name(certificate)) == 1,
        X509_set_pubkey(cert, leafKey) == 1
      else { throw LocalCAError("cannot build a leaf: \(SSLSupport.lastError())") }
      let now = Int(time(nil))
      let end = min(start + lifetime, notAfter)
      try SSLSupport.setValidity(cert, from: start - 3600 - now, to: end - now)
      try SSLSupport.addExtension(
        cert, nid: NID_basic_constraints, "critical,CA:FALSE", issuer: certificate)
      try SSLSupport.addExtension(
        cert, nid: NID_key_usage, "critical,digitalSignature", issuer: certificate)
      try SSLSupport.addExtension(cert, nid: NID_ext_key_usage, "serverAuth", issuer: certificate)
      try SSLSupport.addExtension(cert, nid: NID_subject_alt_name, san, issuer: certificate)
      try SSLSupport.addExtension(
        cert, nid: NID_subject_key_identifier, "hash", issuer: certificate)
      try SSLSupport.addExtension(
        cert, nid: NID_authority_key_identifier, "keyid:always", issuer: certificate)
      guard X509_sign(cert, key, EVP_sha256()) > 0 else {
        throw LocalCAError("cannot sign a leaf: \(SSLSupport.lastError())")
      }
    } catch {
      X509_free(cert)
      throw error
    }
    return Leaf(host: canonical, certificate: cert, issuer: certificate, key: leafKey)
  }

  // MARK: - Text

  static func nameText(_ name: OpaquePointer?) -> String {
    guard let name else { return "" }
    return
      (try? SSLSupport.pem {
        X509_NAME_print_ex($0, name, 0, CP_XN_FLAG_RFC2253) >= 0 ? 1 : 0
      }) ?? ""
  }

  /// An extension's value as `openssl x509 -text` prints it, on one line; nil when absent.
  static func extensionText(_ cert: OpaquePointer, nid: Int32) -> String? {
    let index = X509_get_ext_by_NID(cert, nid, -1)
    guard index >= 0, let ext = X509_get_ext(cert, index) else { return nil }
    let text = try? SSLSupport.pem { X509V3_EXT_print($0, ext, 0, 0) }
    return text.map {
      $0.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        .joined(separator: " ")
    }
  }

  /// `2036-11-26 15:56:00 UTC`.
  public static func dateText(_ seconds: Int) -> String {
    var t = time_t(seconds)
    var tm = Glibc.tm()
    gmtime_r(&t, &tm)
    var buf = [CChar](repeating: 0, count: 32)
    strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S UTC", &tm)
    return SSLSupport.string(buf)
  }
}

extension Substring {
  func trimmingSpaces() -> String {
    String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
  }
}
