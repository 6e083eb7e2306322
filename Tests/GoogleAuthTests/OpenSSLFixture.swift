import Foundation
import XCTest

/// The `openssl` CLI as an independent oracle, and an RSA key generated once per test run.
final class OpenSSLFixture: Sendable {
  let directory: URL
  /// PKCS#8 (`BEGIN PRIVATE KEY`), as in Google key files.
  let pkcs8PEM: String
  /// The same key as PKCS#1 (`BEGIN RSA PRIVATE KEY`).
  let pkcs1PEM: String
  let keyPath: String
  let pkcs1Path: String
  let publicKeyPath: String

  static let shared: OpenSSLFixture = {
    do { return try OpenSSLFixture() } catch { fatalError("cannot create RSA fixture: \(error)") }
  }()

  private init() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("gauth-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    keyPath = directory.appendingPathComponent("key.pem").path
    pkcs1Path = directory.appendingPathComponent("key-pkcs1.pem").path
    publicKeyPath = directory.appendingPathComponent("pub.pem").path
    try Self.openssl([
      "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath,
    ])
    try Self.openssl(["rsa", "-in", keyPath, "-traditional", "-out", pkcs1Path])
    try Self.openssl(["pkey", "-in", keyPath, "-pubout", "-out", publicKeyPath])
    pkcs8PEM = try String(contentsOfFile: keyPath, encoding: .utf8)
    pkcs1PEM = try String(contentsOfFile: pkcs1Path, encoding: .utf8)
  }

  struct Failure: Error, CustomStringConvertible {
    let description: String
  }

  /// Runs `openssl arguments`; returns stdout. Throws on a non-zero exit.
  @discardableResult
  static func openssl(_ arguments: [String], allowFailure: Bool = false) throws -> (
    status: Int32, output: Data
  ) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    if process.terminationStatus != 0 && !allowFailure {
      throw Failure(
        description:
          "openssl \(arguments.joined(separator: " ")) exited \(process.terminationStatus): "
          + String(decoding: errors, as: UTF8.self))
    }
    return (process.terminationStatus, output)
  }

  /// Writes `bytes` to a fresh file in the fixture directory.
  func write(_ bytes: [UInt8], name: String) throws -> String {
    let path = directory.appendingPathComponent("\(UUID().uuidString)-\(name)").path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// `openssl dgst -sha256 -sign key.pem` over `data`.
  func opensslSignature(_ data: [UInt8]) throws -> [UInt8] {
    let input = try write(data, name: "input")
    return [UInt8](try Self.openssl(["dgst", "-sha256", "-sign", keyPath, input]).output)
  }

  /// `openssl dgst -sha256 -verify pub.pem -signature sig data`.
  func opensslVerifies(_ data: [UInt8], signature: [UInt8]) throws -> Bool {
    let input = try write(data, name: "input")
    let signaturePath = try write(signature, name: "sig")
    let result = try Self.openssl(
      ["dgst", "-sha256", "-verify", publicKeyPath, "-signature", signaturePath, input],
      allowFailure: true)
    return result.status == 0
      && String(decoding: result.output, as: UTF8.self).contains("Verified OK")
  }
}
