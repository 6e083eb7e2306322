import XCTest

@testable import CredproxyConfig

final class SecretTests: XCTestCase {
  func testEnv() throws {
    XCTAssertEqual(
      try SecretRef.env("EXAMPLE_TOKEN").resolve(environment: ["EXAMPLE_TOKEN": "s3cr3t"]), "s3cr3t"
    )
    XCTAssertThrowsError(try SecretRef.env("EXAMPLE_TOKEN").resolve(environment: [:])) { e in
      XCTAssertEqual((e as? SecretError)?.message, "env:EXAMPLE_TOKEN is not set")
    }
    XCTAssertThrowsError(try SecretRef.env("E").resolve(environment: ["E": ""])) { e in
      XCTAssertEqual("\(e)", "env:E is empty")
    }
    XCTAssertThrowsError(try SecretRef.env("E").resolve(environment: ["E": "a\r\nX-Evil: 1"])) {
      e in
      XCTAssertFalse("\(e)".contains("Evil"))
    }
  }

  func testFile() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sec-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let path = dir.appendingPathComponent("token").path
    try "tok-value\n".write(toFile: path, atomically: true, encoding: .utf8)
    XCTAssertEqual(try SecretRef.file(path).resolve(environment: [:]), "tok-value")
    try "tok-value\r\n\n".write(toFile: path, atomically: true, encoding: .utf8)
    XCTAssertEqual(try SecretRef.file(path).resolve(environment: [:]), "tok-value")
    let missing = dir.appendingPathComponent("missing").path
    XCTAssertThrowsError(try SecretRef.file(missing).resolve(environment: [:])) { e in
      XCTAssertEqual("\(e)", "file:\(missing) does not exist")
    }
    XCTAssertThrowsError(try SecretRef.file(dir.path).resolve(environment: [:]))
  }

  func testLiteral() throws {
    XCTAssertEqual(try SecretRef.literal("abc").resolve(environment: [:]), "abc")
    XCTAssertEqual(SecretRef.literal("abc").description, "inline secret")
  }
}
