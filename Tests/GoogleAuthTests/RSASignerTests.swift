import Foundation
import XCTest

@testable import GoogleAuth

final class RSASignerTests: XCTestCase {
  let fixture = OpenSSLFixture.shared

  func testPKCS8SignatureEqualsOpenSSLAndVerifies() throws {
    let signer = try RSASigner(pem: fixture.pkcs8PEM)
    XCTAssertEqual(signer.bits, 2048)
    for message in ["", "hello", String(repeating: "credproxy ", count: 1000)] {
      let data = Array(message.utf8)
      let signature = try signer.sign(data)
      XCTAssertEqual(signature.count, 256)
      XCTAssertEqual(signature, try fixture.opensslSignature(data), "message length \(data.count)")
      XCTAssertTrue(try fixture.opensslVerifies(data, signature: signature))
      XCTAssertFalse(try fixture.opensslVerifies(data + [0], signature: signature))
    }
  }

  func testPKCS1KeyGivesTheSameSignature() throws {
    XCTAssertTrue(fixture.pkcs1PEM.contains("BEGIN RSA PRIVATE KEY"))
    let data = Array("same key, other encoding".utf8)
    let pkcs1 = try RSASigner(pem: fixture.pkcs1PEM).sign(data)
    let pkcs8 = try RSASigner(pem: fixture.pkcs8PEM).sign(data)
    XCTAssertEqual(pkcs1, pkcs8)
    XCTAssertTrue(try fixture.opensslVerifies(data, signature: pkcs1))
  }

  func testConcurrentSigningFromOneSigner() throws {
    let signer = try RSASigner(pem: fixture.pkcs8PEM)
    let data = Array("concurrent".utf8)
    let expected = try signer.sign(data)
    let mismatches = Counter()
    DispatchQueue.concurrentPerform(iterations: 64) { index in
      if (try? signer.sign(data)) != expected { mismatches.increment() }
    }
    XCTAssertEqual(mismatches.value, 0)
  }

  func testRejectsBadKeysWithoutEchoingThem() throws {
    XCTAssertThrowsError(try RSASigner(pem: "not a key")) { error in
      XCTAssertTrue("\(error)".contains("not a PEM private key"))
    }
    let garbage = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n"
    XCTAssertThrowsError(try RSASigner(pem: garbage)) { error in
      XCTAssertTrue("\(error)".contains("cannot read"), "\(error)")
      XCTAssertFalse("\(error)".contains("U0VDUkVU"))
    }
    let encrypted =
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    XCTAssertThrowsError(try RSASigner(pem: encrypted)) { error in
      XCTAssertTrue("\(error)".contains("encrypted"))
    }
  }

  func testRejectsNonRSAKey() throws {
    let path = fixture.directory.appendingPathComponent("ec.pem").path
    try OpenSSLFixture.openssl([
      "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path,
    ])
    let pem = try String(contentsOfFile: path, encoding: .utf8)
    XCTAssertThrowsError(try RSASigner(pem: pem)) { error in
      XCTAssertTrue("\(error)".contains("not an RSA key"), "\(error)")
    }
  }

  func testFingerprint() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    XCTAssertEqual(fingerprint("abc"), "ba7816bf8f01")
    XCTAssertEqual(fingerprint("").count, 12)
  }
}

/// A thread-safe counter for tests.
final class Counter: @unchecked Sendable {
  private let lock = NSLock()
  private var count = 0
  func increment() {
    lock.lock()
    count += 1
    lock.unlock()
  }
  var value: Int {
    lock.lock()
    defer { lock.unlock() }
    return count
  }
}
