import CCrypto
import Glibc

/// A server certificate the local CA signed for one host, with its chain and key.
///
/// Ownership: a `Leaf` owns one reference each to its certificate, the CA certificate and the
/// leaf key (`X509_up_ref` / `EVP_PKEY_up_ref` on creation, freed in `deinit`), so it stays valid
/// after the `LocalCA` that made it is gone. The pointers are borrowed by whoever reads them:
/// `SSL_use_certificate`, `SSL_use_PrivateKey`, `SSL_add1_chain_cert` and their `SSL_CTX_`
/// forms take references of their own. Immutable; safe to share between threads.
public final class Leaf: @unchecked Sendable {
  /// The host as certified: a lowercase DNS name or an IP address's canonical text.
  public let host: String
  /// The leaf certificate (`X509*`).
  public let certificate: OpaquePointer
  /// The CA certificate that signed it (`X509*`), the rest of the chain.
  public let issuer: OpaquePointer
  /// The leaf's private key (`EVP_PKEY*`).
  public let privateKey: OpaquePointer
  /// Validity, seconds since the epoch.
  public let notBefore: Int
  public let notAfter: Int

  /// Takes ownership of `certificate`; takes new references to `issuer` and `key`.
  init(host: String, certificate: OpaquePointer, issuer: OpaquePointer, key: OpaquePointer) {
    self.host = host
    self.certificate = certificate
    X509_up_ref(issuer)
    self.issuer = issuer
    EVP_PKEY_up_ref(key)
    self.privateKey = key
    notBefore = SSLSupport.epochSeconds(X509_get0_notBefore(certificate)) ?? 0
    notAfter = SSLSupport.epochSeconds(X509_get0_notAfter(certificate)) ?? 0
  }

  deinit {
    X509_free(certificate)
    X509_free(issuer)
    EVP_PKEY_free(privateKey)
  }

  /// The chain a server sends: the leaf, then the CA.
  public var chain: [OpaquePointer] { [certificate, issuer] }

  /// A new server `SSL_CTX*` for this host, owned by the caller (`SSL_CTX_free`): the leaf, the
  /// CA as its chain, the leaf key; TLS 1.2 or later; ALPN answers `http/1.1` when the client
  /// offers it (and nothing otherwise: h2 is never selected); one session ticket and no server
  /// session cache; partial and moving-buffer writes
  /// and released buffers, as credproxy's client transport expects. The context holds its own
  /// references to the certificates and key. Not set here: a servername callback
  /// (`cp_ssl_ctx_set_servername_callback` in CCrypto) — the caller adds the SNI policy it wants.
  public func makeServerContext() throws(LocalCAError) -> OpaquePointer {
    guard let ctx = SSL_CTX_new(TLS_server_method()) else {
      throw LocalCAError("cannot create a TLS context: \(SSLSupport.lastError())")
    }
    cp_ssl_ctx_set_min_tls12(ctx)
    cp_ssl_ctx_set_mode(
      ctx, CP_SSL_MODE_PARTIAL_WRITE | CP_SSL_MODE_MOVING_BUFFER | CP_SSL_MODE_RELEASE_BUFFERS)
    cp_ssl_ctx_alpn_http11(ctx)
    // One TLS 1.3 ticket, not OpenSSL's two: clients that resume (Node's agent, Java, curl
    // within a process) use one, and each ticket costs a key derivation and an encryption on
    // every full handshake. No server-side session cache: tickets are stateless, and a cache
    // per intercepted host would grow with the hosts (and takes a lock shared by the loops).
    SSL_CTX_set_num_tickets(ctx, 1)
    cp_ssl_ctx_session_cache_off(ctx)
    guard SSL_CTX_use_certificate(ctx, certificate) == 1,
      SSL_CTX_use_PrivateKey(ctx, privateKey) == 1,
      cp_ssl_ctx_add1_chain_cert(ctx, issuer) == 1,
      SSL_CTX_check_private_key(ctx) == 1
    else {
      let why = SSLSupport.lastError()
      SSL_CTX_free(ctx)
      throw LocalCAError("cannot configure the TLS context for \(host): \(why)")
    }
    return ctx
  }

  /// Whether the leaf verifies against its CA for its host (chain, name constraints, validity,
  /// purpose serverAuth); nil when it does, else OpenSSL's reason ("permitted subtree violation").
  public func verificationError(at time: Int? = nil) -> String? {
    guard let store = X509_STORE_new() else { return "out of memory" }
    defer { X509_STORE_free(store) }
    guard X509_STORE_add_cert(store, issuer) == 1, let ctx = X509_STORE_CTX_new() else {
      return "cannot build a trust store: \(SSLSupport.lastError())"
    }
    defer { X509_STORE_CTX_free(ctx) }
    guard X509_STORE_CTX_init(ctx, store, certificate, nil) == 1 else {
      return "cannot start verification: \(SSLSupport.lastError())"
    }
    let param = X509_STORE_CTX_get0_param(ctx)
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER)
    if let time { X509_VERIFY_PARAM_set_time(param, time_t(time)) }
    let hostOK: Int32
    if SSLSupport.ipLiteral(host) != nil {
      hostOK = X509_VERIFY_PARAM_set1_ip_asc(param, host)
    } else {
      hostOK = X509_VERIFY_PARAM_set1_host(param, host, 0)
    }
    guard hostOK == 1 else { return "cannot set the host to verify" }
    if X509_verify_cert(ctx) == 1 { return nil }
    ERR_clear_error()
    return String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(ctx))))
  }

  /// The leaf certificate in PEM.
  public func certificatePEM() -> String {
    (try? SSLSupport.pem { PEM_write_bio_X509($0, certificate) }) ?? ""
  }

  /// The leaf's key as PEM bytes (PKCS#8), for `ca leaf --out`; wipe them after use.
  public func privateKeyPEMBytes() throws(LocalCAError) -> [UInt8] {
    try SSLSupport.pemBytes { PEM_write_bio_PrivateKey($0, privateKey, nil, nil, 0, nil, nil) }
  }

  /// The certificate's fields as `openssl x509 -text` prints them (no key material).
  public func text() -> String {
    (try? SSLSupport.pem { X509_print($0, certificate) }) ?? ""
  }
}

extension Leaf {
  /// Writes `HOST.pem` (the leaf), `HOST-chain.pem` (leaf + CA) and `HOST-key.pem` (mode 0600
  /// from creation) into `directory`, replacing older files of that name; returns their paths.
  /// For operators inspecting what credproxy serves, and for tests.
  public func writeFiles(directory: String) throws(LocalCAError) -> (
    certificate: String, chain: String, key: String
  ) {
    let base = (directory.hasSuffix("/") ? directory : directory + "/") + host
    let paths = (certificate: base + ".pem", chain: base + "-chain.pem", key: base + "-key.pem")
    let leafPEM = certificatePEM()
    let caPEM = (try? SSLSupport.pem { PEM_write_bio_X509($0, issuer) }) ?? ""
    try Files.replace(paths.certificate, mode: 0o644, contents: Array(leafPEM.utf8))
    try Files.replace(paths.chain, mode: 0o644, contents: Array((leafPEM + caPEM).utf8))
    var key = try privateKeyPEMBytes()
    defer { SSLSupport.cleanse(&key) }
    try Files.replace(paths.key, mode: 0o600, contents: key)
    return paths
  }
}
