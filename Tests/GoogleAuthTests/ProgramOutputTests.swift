import XCTest

@testable import GoogleAuth

final class ProgramOutputTests: XCTestCase {
  private func parse(_ text: String, now: Double = 1_700_000_000) -> Result<
    MintedToken, ProgramTokenOutput.Problem
  > {
    ProgramTokenOutput.parse(Array(text.utf8), now: now)
  }

  func testExpiresIn() throws {
    let t = try parse("{\"token\": \"abc.def\", \"expires_in\": 120}\n", now: 1_000).get()
    XCTAssertEqual(t, MintedToken(value: "abc.def", expiresAt: 1_120, kind: .accessToken))
    XCTAssertEqual(
      try parse("{\"token\":\"x\",\"expires_in\":\"60\"}", now: 1_000).get().expiresAt, 1_060)
  }

  func testExpiresAt() throws {
    let t = try parse(
      "{\"token\": \"t\", \"expires_at\": \"2026-12-01T00:00:00Z\"}", now: 1_700_000_000
    ).get()
    XCTAssertEqual(t.expiresAt, 1_796_083_200)
    let offset = try parse(
      "{\"token\": \"t\", \"expires_at\": \"2026-12-01T02:00:00+02:00\"}", now: 1_700_000_000
    ).get()
    XCTAssertEqual(offset.expiresAt, 1_796_083_200)
  }

  func testRejectionsNameWhatWasExpectedNeverTheOutput() {
    let secret = "s3cr3t-token-value"
    let cases = [
      "not json \(secret)",
      "[\"\(secret)\"]",
      "{\"access_token\": \"\(secret)\", \"expires_in\": 3}",
      "{\"token\": \"\(secret)\"}",
      "{\"token\": \"\(secret)\", \"expires_in\": -5}",
      "{\"token\": \"\(secret)\", \"expires_in\": true}",
      "{\"token\": \"\(secret)\", \"expires_at\": \"tomorrow\"}",
      "{\"token\": \"\(secret)\", \"expires_at\": \"1999-01-01T00:00:00Z\"}",
      "{\"token\": \"\(secret)\\r\\nX-Evil: 1\", \"expires_in\": 60}",
      "{\"token\": \"\", \"expires_in\": 60}",
      "",
    ]
    for text in cases {
      guard case .failure(let problem) = parse(text) else {
        XCTFail("accepted \(text)")
        continue
      }
      XCTAssertFalse(problem.description.contains(secret), problem.description)
    }
    if case .failure(let p) = parse("{\"token\": \"x\"}") {
      XCTAssertTrue(
        p.description.hasPrefix("printed neither expires_in nor expires_at"), p.description)
    }
  }
}
