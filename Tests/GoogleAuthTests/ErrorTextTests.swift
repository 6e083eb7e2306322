import XCTest

@testable import GoogleAuth

final class ErrorTextTests: XCTestCase {
  func testControlCharactersAndEscapesBecomeQuestionMarks() {
    let out = ErrorText.sanitize("a\u{1b}[31mb\r\nc\u{0}d\u{7f}é", secrets: [])
    XCTAssertEqual(out, "a?[31mb??c?d??")
  }

  func testCappedWithAsciiEllipsis() {
    let out = ErrorText.sanitize(String(repeating: "A", count: 10_000), secrets: [])
    XCTAssertEqual(out, String(repeating: "A", count: ErrorText.limit) + "...")
  }

  func testSecretsAreRedactedBeforeTheCap() {
    let secret = "s3cr3t-value-0123456789"
    let text = String(repeating: "x", count: ErrorText.limit - 5) + secret
    let out = ErrorText.sanitize(text, secrets: [secret])
    XCTAssertFalse(out.contains("s3cr3"), out)
    XCTAssertTrue(out.hasPrefix(String(repeating: "x", count: ErrorText.limit - 5) + "[reda"), out)
  }

  func testEverySecretEveryOccurrenceLongestFirst() {
    let out = ErrorText.sanitize(
      "token=abcdefgh-long and abcdefgh and abcdefgh-long", secrets: ["abcdefgh", "abcdefgh-long"])
    XCTAssertEqual(out, "token=[redacted] and [redacted] and [redacted]")
  }

  func testPEMMaterialIsRedactedLineByLine() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    let pem = "-----BEGIN PRIVATE KEY-----\n\(body)\n-----END PRIVATE KEY-----\n"
    let out = ErrorText.sanitize("key: \(body) end", secrets: [pem])
    XCTAssertEqual(out, "key: [redacted] end")
  }

  func testVeryShortSecretsAreNotUsed() {
    // A 1-character "secret" would blank out every occurrence of a letter.
    XCTAssertEqual(ErrorText.sanitize("a b c", secrets: ["a"]), "a b c")
  }

  func testEndpointErrorIsSanitisedInEveryField() {
    let e = TokenEndpointError(
      status: 400, error: "bad\u{1b}code-SECRET123456", errorDescription: "desc SECRET123456\n",
      retryable: false)
    let s = e.sanitized(secrets: ["SECRET123456"])
    XCTAssertEqual(s.error, "bad?code-[redacted]")
    XCTAssertEqual(s.errorDescription, "desc [redacted]?")
    XCTAssertFalse(s.description.contains("SECRET123456"))
  }
}
