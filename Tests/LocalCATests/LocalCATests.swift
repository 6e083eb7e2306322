import CCrypto
import Glibc
import Synchronization
import XCTest

@testable import LocalCA

final class LocalCATests: XCTestCase {
  var dir = ""

  override func setUp() {
    var template = Array("/tmp/localca-test-XXXXXX".utf8CString)
    dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
  }

  override func tearDown() {
    _ = dir.withCString { system("rm -rf '\(String(cString: $0))'") }
  }

  // MARK: helpers

  func ext(_ cert: OpaquePointer, _ nid: Int32) -> OpaquePointer? {
    let i = X509_get_ext_by_NID(cert, nid, -1)
    return i >= 0 ? X509_get_ext(cert, i) : nil
  }

  func critical(_ cert: OpaquePointer, _ nid: Int32) -> Bool {
    guard let e = ext(cert, nid) else { return false }
    return X509_EXTENSION_get_critical(e) == 1
  }

  func octets(_ s: UnsafePointer<ASN1_OCTET_STRING>?) -> [UInt8] {
    guard let s else { return [] }
    return Array(
      UnsafeBufferPointer(start: ASN1_STRING_get0_data(s), count: Int(ASN1_STRING_length(s))))
  }

  func serialBytes(_ cert: OpaquePointer) -> [UInt8] {
    let bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nil)!
    defer { BN_free(bn) }
    var out = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
    BN_bn2bin(bn, &out)
    return out
  }

  /// The SAN entries as `DNS:x` / `IP:x`.
  func sans(_ cert: OpaquePointer) -> String {
    LocalCA.extensionText(cert, nid: NID_subject_alt_name) ?? ""
  }

  // MARK: the CA

  func testInitWritesA0600KeyAndACACertificate() throws {
    let ca = try LocalCA.create(commonName: "credproxy local CA (test)")
    let cert = dir + "/sub/ca.pem"
    let key = dir + "/sub/ca-key.pem"
    try ca.write(certPath: cert, keyPath: key, force: false)
    var st = stat()
    XCTAssertEqual(stat(key, &st), 0)
    XCTAssertEqual(st.st_mode & 0o777, 0o600)
    XCTAssertEqual(stat(cert, &st), 0)
    XCTAssertEqual(st.st_mode & 0o777, 0o644)
    let keyText = try String(contentsOfFile: key, encoding: .utf8)
    XCTAssertTrue(keyText.hasPrefix("-----BEGIN PRIVATE KEY-----"))

    let loaded = try LocalCA.load(certPath: cert, keyPath: key)
    let c = loaded.certificate
    XCTAssertEqual(X509_get_version(c), 2)
    XCTAssertEqual(X509_check_ca(c), 1)
    XCTAssertEqual(X509_get_pathlen(c), 0)
    XCTAssertTrue(critical(c, NID_basic_constraints))
    XCTAssertTrue(critical(c, NID_key_usage))
    XCTAssertEqual(X509_get_key_usage(c), UInt32(KU_KEY_CERT_SIGN | KU_CRL_SIGN))
    XCTAssertEqual(octets(X509_get0_subject_key_id(c)).count, 20)
    XCTAssertEqual(serialBytes(c).count, 16)
    XCTAssertEqual(loaded.subject, "CN=credproxy local CA (test),O=credproxy")
    XCTAssertNil(loaded.nameConstraints)
    let now = Int(time(nil))
    XCTAssertEqual(Double(loaded.notBefore), Double(now - 3600), accuracy: 5)
    XCTAssertEqual(Double(loaded.notAfter), Double(now + 3650 * 86_400), accuracy: 5)
    XCTAssertEqual(X509_get_signature_nid(c), NID_ecdsa_with_SHA256)
    XCTAssertEqual(loaded.certificatePEM, ca.certificatePEM)
  }

  func testInitRefusesToOverwriteUnlessForced() throws {
    let cert = dir + "/ca.pem"
    let key = dir + "/ca-key.pem"
    let first = try LocalCA.create(commonName: "one")
    try first.write(certPath: cert, keyPath: key, force: false)
    let second = try LocalCA.create(commonName: "two")
    XCTAssertThrowsError(try second.write(certPath: cert, keyPath: key, force: false)) { e in
      XCTAssertTrue("\(e)".contains("already exists"), "\(e)")
      XCTAssertTrue("\(e)".contains("--force"), "\(e)")
    }
    XCTAssertEqual(try LocalCA.load(certPath: cert, keyPath: key).subject, first.subject)
    try second.write(certPath: cert, keyPath: key, force: true)
    XCTAssertEqual(try LocalCA.load(certPath: cert, keyPath: key).subject, second.subject)
    var st = stat()
    XCTAssertEqual(stat(key, &st), 0)
    XCTAssertEqual(st.st_mode & 0o777, 0o600)
  }

  func testNameConstraintsPermitOnlyTheRoutesHosts() throws {
    let ca = try LocalCA.create(
      commonName: "nc",
      permitted: [
        .subdomains(of: "googleapis.com"), .dns("api.example.com"), .ip("10.0.0.1"), .ip("::1"),
      ])
    XCTAssertTrue(critical(ca.certificate, NID_name_constraints))
    let text = try XCTUnwrap(ca.nameConstraints)
    XCTAssertTrue(text.contains("DNS:.googleapis.com"), text)
    XCTAssertTrue(text.contains("DNS:api.example.com"), text)
    XCTAssertTrue(text.contains("IP:10.0.0.1/255.255.255.255"), text)
    for host in [
      "storage.googleapis.com", "a.b.googleapis.com", "api.example.com", "10.0.0.1", "::1",
    ] {
      XCTAssertNil(try ca.leaf(for: host).verificationError(), host)
    }
    for host in ["googleapis.com", "evil.com", "example.com", "10.0.0.2", "::2"] {
      let why = try ca.leaf(for: host).verificationError()
      XCTAssertEqual(why, "permitted subtree violation", host)
    }
    XCTAssertThrowsError(try LocalCA.create(commonName: "x", permitted: [.dns("a.com,DNS:b.com")]))
  }

  // MARK: leaves

  func testLeafFields() throws {
    let ca = try LocalCA.create(commonName: "leaf test")
    let now = Int(time(nil))
    let leaf = try ca.leaf(for: "API.Example.com.")
    let c = leaf.certificate
    XCTAssertEqual(leaf.host, "api.example.com")
    XCTAssertEqual(sans(c), "DNS:api.example.com")
    XCTAssertEqual(X509_check_ca(c), 0)
    XCTAssertTrue(critical(c, NID_basic_constraints))
    XCTAssertEqual(X509_get_key_usage(c), UInt32(KU_DIGITAL_SIGNATURE))
    XCTAssertEqual(X509_get_extended_key_usage(c), UInt32(XKU_SSL_SERVER))
    let caSKI = octets(X509_get0_subject_key_id(ca.certificate))
    XCTAssertEqual(octets(X509_get0_authority_key_id(c)), caSKI)
    let ski = octets(X509_get0_subject_key_id(c))
    XCTAssertEqual(ski.count, 20)
    XCTAssertNotEqual(ski, caSKI)
    XCTAssertEqual(Double(leaf.notBefore), Double(now - 3600), accuracy: 5)
    XCTAssertEqual(Double(leaf.notAfter), Double(now + 7 * 86_400), accuracy: 5)
    XCTAssertEqual(serialBytes(c).count, 16)
    let again = try ca.leaf(for: "api.example.com")
    withExtendedLifetime(again) {
      XCTAssertNotEqual(serialBytes(c), serialBytes(again.certificate))
    }
    XCTAssertEqual(X509_check_issued(ca.certificate, c), X509_V_OK)
    XCTAssertNil(leaf.verificationError())
    XCTAssertEqual(leaf.chain.count, 2)
    XCTAssertEqual(X509_check_private_key(c, leaf.privateKey), 1)

    let v6 = try ca.leaf(for: "[2001:DB8::1]")
    XCTAssertEqual(v6.host, "2001:db8::1")
    XCTAssertEqual(sans(v6.certificate), "IP Address:2001:DB8:0:0:0:0:0:1")
    XCTAssertNil(v6.verificationError())
    let v4 = try ca.leaf(for: "127.0.0.1")
    XCTAssertEqual(sans(v4.certificate), "IP Address:127.0.0.1")
    XCTAssertNil(v4.verificationError())

    for bad in ["a,DNS:evil.com", "", "a..b", "has space", "x:y"] {
      XCTAssertThrowsError(try ca.leaf(for: bad), bad)
    }
    // Never past the CA's own expiry.
    let short = try LocalCA.create(commonName: "short", validityDays: 2)
    XCTAssertEqual(try short.leaf(for: "a.example").notAfter, short.notAfter)
  }

  /// A real TLS 1.2+ handshake in memory: the context serves the chain and key, ALPN picks
  /// http/1.1, and a client trusting only the CA verifies the host.
  func testServerContextHandshakes() throws {
    let ca = try LocalCA.create(commonName: "tls test", permitted: [.dns("localhost")])
    let leaf = try ca.leaf(for: "localhost")
    let serverCtx = try leaf.makeServerContext()
    defer { SSL_CTX_free(serverCtx) }
    let clientCtx = try XCTUnwrap(SSL_CTX_new(TLS_client_method()))
    defer { SSL_CTX_free(clientCtx) }
    X509_STORE_add_cert(SSL_CTX_get_cert_store(clientCtx), ca.certificate)
    SSL_CTX_set_verify(clientCtx, SSL_VERIFY_PEER, nil)
    let alpn: [UInt8] = [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8)
    XCTAssertEqual(SSL_CTX_set_alpn_protos(clientCtx, alpn, UInt32(alpn.count)), 0)

    func handshake(host: String) -> (ok: Bool, verify: Int, alpn: String) {
      let server = SSL_new(serverCtx)!
      let client = SSL_new(clientCtx)!
      defer {
        SSL_free(server)
        SSL_free(client)
      }
      var a: OpaquePointer?
      var b: OpaquePointer?
      BIO_new_bio_pair(&a, 0, &b, 0)
      SSL_set_bio(server, a, a)
      SSL_set_bio(client, b, b)
      SSL_set_accept_state(server)
      SSL_set_connect_state(client)
      SSL_set1_host(client, host)
      var done = (false, false)
      for _ in 0..<20 where !(done.0 && done.1) {
        if !done.1 { done.1 = SSL_do_handshake(client) == 1 }
        if !done.0 { done.0 = SSL_do_handshake(server) == 1 }
      }
      var p: UnsafePointer<UInt8>?
      var n: UInt32 = 0
      SSL_get0_alpn_selected(client, &p, &n)
      let selected =
        p.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(n)), as: UTF8.self) }
        ?? ""
      ERR_clear_error()
      return (done.0 && done.1, Int(SSL_get_verify_result(client)), selected)
    }
    let good = handshake(host: "localhost")
    XCTAssertTrue(good.ok)
    XCTAssertEqual(good.verify, Int(X509_V_OK))
    XCTAssertEqual(good.alpn, "http/1.1")
    let bad = handshake(host: "example.com")
    XCTAssertFalse(bad.ok)
    XCTAssertEqual(bad.verify, Int(X509_V_ERR_HOSTNAME_MISMATCH))
  }

  // MARK: the cache

  func testCacheReusesRenewsAndBounds() throws {
    let ca = try LocalCA.create(commonName: "cache")
    let clock = Mutex(Int(time(nil)))
    let cache = LeafCache(ca: ca, capacity: 3, clock: { clock.withLock { $0 } })
    let first = try cache.serverContext(forHost: "a.example")
    XCTAssertTrue(try cache.serverContext(forHost: "A.example") === first)
    XCTAssertEqual(cache.statistics.minted, 1)
    XCTAssertEqual(cache.statistics.hits, 1)
    XCTAssertGreaterThan(cache.statistics.mintNanoseconds, 0)

    // Still more than a day left after 5 days 22 h: kept.
    clock.withLock { $0 += 5 * 86_400 + 22 * 3600 }
    XCTAssertTrue(try cache.serverContext(forHost: "a.example") === first)
    // Less than a day left: renewed, well before expiry.
    clock.withLock { $0 += 2 * 3600 }
    let renewed = try cache.serverContext(forHost: "a.example")
    XCTAssertFalse(renewed === first)
    XCTAssertGreaterThan(renewed.leaf.notAfter, first.leaf.notAfter)
    XCTAssertEqual(cache.statistics.minted, 2)

    // Bounded: the oldest minted goes first.
    for h in ["b.example", "c.example", "d.example"] { _ = try cache.serverContext(forHost: h) }
    let stats = cache.statistics
    XCTAssertEqual(stats.entries, 3)
    XCTAssertEqual(stats.evicted, 1)
    let b = try cache.serverContext(forHost: "c.example")
    XCTAssertEqual(cache.statistics.minted, 5)  // c still cached
    _ = b
    _ = try cache.serverContext(forHost: "a.example")  // a was evicted (oldest): minted again
    XCTAssertEqual(cache.statistics.minted, 6)
    XCTAssertEqual(cache.statistics.entries, 3)

    // Many threads, one host: every caller gets a working context, one stays cached.
    let hosts = (0..<8).map { "t\($0).example" }
    DispatchQueueless.concurrentPerform(iterations: 64) { i in
      _ = try? cache.serverContext(forHost: hosts[i % hosts.count])
    }
    XCTAssertEqual(cache.statistics.entries, 3)
  }

  // MARK: loading errors

  func testLoadErrorsNameTheFileAndTheCause() throws {
    let cert = dir + "/ca.pem"
    let key = dir + "/ca-key.pem"
    try LocalCA.create(commonName: "one").write(certPath: cert, keyPath: key, force: false)
    let other = try LocalCA.create(commonName: "two")
    try other.write(certPath: dir + "/b/ca.pem", keyPath: dir + "/b/ca-key.pem", force: false)

    func message(_ c: String, _ k: String) -> String {
      do {
        _ = try LocalCA.load(certPath: c, keyPath: k)
        return "loaded"
      } catch { return error.description }
    }
    XCTAssertEqual(
      message(dir + "/missing.pem", key),
      "CA certificate (ca-cert) \(dir)/missing.pem: cannot read: No such file or directory")
    XCTAssertEqual(
      message(cert, dir + "/missing-key.pem"),
      "CA key (ca-key) \(dir)/missing-key.pem: cannot read: No such file or directory")
    XCTAssertEqual(
      message(cert, dir + "/b/ca-key.pem"),
      "CA key \(dir)/b/ca-key.pem does not match the CA certificate \(cert)")
    FileManagerless.write(dir + "/garbage.pem", "hello\n")
    XCTAssertTrue(
      message(dir + "/garbage.pem", key).hasPrefix(
        "CA certificate \(dir)/garbage.pem (ca-cert): not a PEM certificate"))
    XCTAssertTrue(
      message(cert, dir + "/garbage.pem").hasPrefix(
        "CA key \(dir)/garbage.pem (ca-key): not an unencrypted PEM private key"))
    XCTAssertTrue(message(dir, key).hasSuffix("cannot read: it is a directory"))

    // A leaf is not a CA.
    let leaf = try other.leaf(for: "x.example")
    FileManagerless.write(dir + "/leaf.pem", leaf.certificatePEM())
    var keyBytes = try leaf.privateKeyPEMBytes()
    FileManagerless.write(dir + "/leaf-key.pem", String(decoding: keyBytes, as: UTF8.self))
    SSLSupport.cleanse(&keyBytes)
    XCTAssertEqual(
      message(dir + "/leaf.pem", dir + "/leaf-key.pem"),
      "CA certificate \(dir)/leaf.pem is not a CA: it lacks basicConstraints CA:TRUE; expected a certificate made by `credproxy ca init`"
    )
    XCTAssertEqual(message(cert, key), "loaded")
  }

  // MARK: trust

  func testTrustBundleHasTheSystemRootsAndTheCA() throws {
    let ca = try LocalCA.create(commonName: "trust")
    FileManagerless.write(dir + "/system.pem", "SYSTEM ROOTS")
    let setup = TrustSetup(caPath: dir + "/ca.pem", bundlePath: dir + "/out/ca-bundle.pem")
    XCTAssertEqual(
      try setup.writeBundle(caPEM: ca.certificatePEM, systemStore: dir + "/system.pem"),
      dir + "/system.pem")
    let bundle = try String(contentsOfFile: dir + "/out/ca-bundle.pem", encoding: .utf8)
    XCTAssertTrue(bundle.hasPrefix("SYSTEM ROOTS\n"))
    XCTAssertTrue(bundle.hasSuffix(ca.certificatePEM))
    XCTAssertTrue(setup.shellExports().contains("export NODE_EXTRA_CA_CERTS=\(dir)/ca.pem\n"))
    XCTAssertEqual(TrustSetup.shellQuoted("/a b/it's"), "'/a b/it'\\''s'")
  }
}

/// Threads without Dispatch or Foundation.
enum DispatchQueueless {
  static func concurrentPerform(iterations: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Box: @unchecked Sendable {
      let body: @Sendable (Int) -> Void
      let index: Int
      init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) {
        self.body = body
        self.index = index
      }
    }
    var threads: [pthread_t] = []
    for i in 0..<iterations {
      var t = pthread_t()
      let box = Unmanaged.passRetained(Box(body, i)).toOpaque()
      pthread_create(
        &t, nil,
        { arg in
          let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
          box.body(box.index)
          return nil
        }, box)
      threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
  }
}

enum FileManagerless {
  static func write(_ path: String, _ text: String) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
  }
}
