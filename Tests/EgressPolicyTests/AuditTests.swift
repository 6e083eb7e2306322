import EgressPolicy
import Foundation
import XCTest

final class AuditTests: XCTestCase {
  func record(query: String? = nil) -> AuditRecord {
    AuditRecord(
      time: 1_795_701_600.123, client: "ci", source: "10.0.0.7:51234", method: "GET",
      scheme: "http",
      host: "api.example.com", port: 443, path: "/v1/things", query: query, route: 2,
      decision: .allow, reason: nil, credential: "env:EXAMPLE_TOKEN",
      tokenFingerprint: "sha256:ab12cd34",
      status: 200, bytesIn: 12, bytesOut: 512, durationMs: 41.5)
  }

  func object(_ line: String) throws -> [String: Any] {
    XCTAssertFalse(line.contains("\n"))
    let o = try JSONSerialization.jsonObject(with: Data(line.utf8))
    return try XCTUnwrap(o as? [String: Any])
  }

  func testFieldsAndOrder() throws {
    let line = AuditFormatter(logQueries: false).jsonLine(record(query: "token=abc"))
    XCTAssertEqual(
      line,
      #"{"time":"2026-11-26T14:00:00.123Z","client":"ci","source":"10.0.0.7:51234","method":"GET","scheme":"http","host":"api.example.com","port":443,"path":"/v1/things","route":2,"decision":"allow","reason":null,"credential":"env:EXAMPLE_TOKEN","token_fingerprint":"sha256:ab12cd34","status":200,"bytes_in":12,"bytes_out":512,"duration_ms":41.5}"#
    )
    XCTAssertFalse(line.contains("abc"), "queries are not logged unless log-queries on")
    var denied = record()
    denied.client = nil
    denied.route = nil
    denied.port = nil
    denied.decision = .report
    denied.reason = "client_not_allowed"
    denied.durationMs = 0.0004
    let o = try object(AuditFormatter().jsonLine(denied))
    XCTAssertTrue(o["client"] is NSNull)
    XCTAssertTrue(o["route"] is NSNull)
    XCTAssertTrue(o["port"] is NSNull)
    XCTAssertEqual(o["decision"] as? String, "report")
    XCTAssertEqual(o["reason"] as? String, "client_not_allowed")
    XCTAssertEqual(o["duration_ms"] as? Double, 0)
    XCTAssertNil(o["query"])
  }

  func testQueryRedaction() throws {
    let f = AuditFormatter(logQueries: true)
    let q =
      "page=2&token=s3cr3t&API_KEY=k1&access%5Ftoken=t2&X-Amz-Signature=sig1&my_secret=x&client-secret=y&sort=asc;sig=z&apikey=&flag&code=oauth&Refresh_Token=r"
    let o = try object(f.jsonLine(record(query: q)))
    let logged = try XCTUnwrap(o["query"] as? String)
    XCTAssertEqual(
      logged,
      "page=2&token=REDACTED&API_KEY=REDACTED&access%5Ftoken=REDACTED&X-Amz-Signature=REDACTED&my_secret=REDACTED&client-secret=REDACTED&sort=asc;sig=REDACTED&apikey=REDACTED&flag&code=REDACTED&Refresh_Token=REDACTED"
    )
    for secret in ["s3cr3t", "k1", "t2", "sig1", "=x", "=y", "=z", "oauth", "=r"] {
      XCTAssertFalse(logged.contains(secret), secret)
    }
    for name in [
      "token", "key", "secret", "password", "sig", "signature", "access_token", "api_key", "apikey",
      "client_secret", "refresh_token", "id_token", "ID_TOKEN", "x_token", "aws_key", "db_secret",
    ] {
      XCTAssertTrue(QueryRedactor.isSecretParameter(name), name)
    }
    for name in ["page", "keys", "tokens", "monkey", "q", "secretary", "signed"] {
      XCTAssertFalse(QueryRedactor.isSecretParameter(name), name)
    }
    XCTAssertEqual(QueryRedactor.redact(""), "")
    XCTAssertEqual(QueryRedactor.redact("a=1"), "a=1")
    // No query in the record: null.
    XCTAssertTrue(try object(f.jsonLine(record()))["query"] is NSNull)
  }

  func testEscaping() throws {
    var r = record()
    r.path = "/a\"b\\c\n\r\t\u{01}\u{7F}\u{2028}é😀"
    r.reason = "</script>"
    r.client = "quote\"client"
    let line = AuditFormatter().jsonLine(r)
    XCTAssertFalse(line.contains("\n"))
    XCTAssertTrue(line.contains(#""path":"/a\"b\\c\n\r\t\u0001\u007f\u2028é😀""#), line)
    let o = try object(line)
    XCTAssertEqual(o["path"] as? String, r.path)
    XCTAssertEqual(o["client"] as? String, r.client)
  }

  func testTimestampsAndTargets() {
    XCTAssertEqual(Timestamp.iso8601(0), "1970-01-01T00:00:00.000Z")
    XCTAssertEqual(Timestamp.iso8601(951_782_400.5), "2000-02-29T00:00:00.500Z")
    XCTAssertEqual(Timestamp.iso8601(4_102_444_799.999), "2099-12-31T23:59:59.999Z")
    XCTAssertEqual(Timestamp.iso8601(-1), "1969-12-31T23:59:59.000Z")
    // Agrees with Foundation across many instants.
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    for _ in 0..<200 {
      let t = Double(Int64.random(in: 0...4_000_000_000_000)) / 1000
      XCTAssertEqual(Timestamp.iso8601(t), f.string(from: Date(timeIntervalSince1970: t)), "\(t)")
    }
    XCTAssertTrue(AuditRecord.splitTarget("/a/b?x=1&y") == ("/a/b", "x=1&y"))
    XCTAssertTrue(AuditRecord.splitTarget("/a#frag?no") == ("/a", nil))
    XCTAssertTrue(AuditRecord.splitTarget("/") == ("/", nil))
  }
}
