import AuditReport
import CredproxyConfig
import EgressPolicy
import Foundation
import Wire
import XCTest

final class AuditReaderTests: XCTestCase {
  var dir: URL!

  override func setUpWithError() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "auditreport-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

  func lines(_ path: String) throws -> (lines: [String], counts: AuditLogReader.Counts) {
    var out: [String] = []
    let counts = try AuditLogReader.forEachLine(path: path) {
      out.append(String(decoding: $0, as: UTF8.self))
    }
    return (out, counts)
  }

  /// Compresses with the system's gzip (an implementation other than the zlib calls we make).
  func gzip(_ file: URL) throws -> URL {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-k", "-f", file.path]
    try p.run()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0)
    return URL(fileURLWithPath: file.path + ".gz")
  }

  func testPlainAndGzipGiveTheSameLinesAcrossChunkBoundaries() throws {
    // Lines of varied lengths so that many straddle the 256 KiB read and inflate chunks.
    var expected: [String] = []
    var text = ""
    for i in 0..<20_000 {
      let line = "{\"n\":\(i),\"pad\":\"" + String(repeating: "x", count: (i * 37) % 300) + "\"}"
      expected.append(line)
      text += line + (i % 7 == 0 ? "\r\n" : "\n")
    }
    text += "last line without newline"
    expected.append("last line without newline")
    let plain = dir.appendingPathComponent("audit.jsonl")
    try text.write(to: plain, atomically: true, encoding: .utf8)
    let gz = try gzip(plain)
    let a = try lines(plain.path)
    XCTAssertEqual(a.lines, expected)
    let b = try lines(gz.path)
    XCTAssertEqual(b.lines, expected)
    XCTAssertEqual(b.counts.bytes, UInt64(text.utf8.count), "bytes counted after inflating")
  }

  func testConcatenatedGzipMembersAndTruncation() throws {
    let one = dir.appendingPathComponent("one")
    let two = dir.appendingPathComponent("two")
    try "a\nb\n".write(to: one, atomically: true, encoding: .utf8)
    try "c\n".write(to: two, atomically: true, encoding: .utf8)
    var joined = try Data(contentsOf: gzip(one))
    joined += try Data(contentsOf: gzip(two))
    let both = dir.appendingPathComponent("audit.jsonl.2.gz")
    try joined.write(to: both)
    XCTAssertEqual(try lines(both.path).lines, ["a", "b", "c"])

    let cut = dir.appendingPathComponent("cut.gz")
    try joined.prefix(joined.count / 2 + 3).write(to: cut)
    XCTAssertThrowsError(try lines(cut.path)) { error in
      XCTAssertTrue("\(error)".contains("gzip"), "\(error)")
    }
    XCTAssertThrowsError(try lines(dir.appendingPathComponent("missing").path))
  }

  func testOverlongLineIsSkippedAndCounted() throws {
    let f = dir.appendingPathComponent("long")
    let long = String(repeating: "y", count: AuditLogReader.maxLineBytes + 10)
    try "first\n\(long)\nlast\n".write(to: f, atomically: true, encoding: .utf8)
    let r = try lines(f.path)
    XCTAssertEqual(r.lines, ["first", "last"])
    XCTAssertEqual(r.counts.tooLong, 1)
  }
}

final class AuditEntryTests: XCTestCase {
  func parse(_ line: String) -> AuditEntry? {
    Array(line.utf8).withUnsafeBufferPointer { AuditEntry.parse($0) }
  }

  func testReadsWhatTheAuditFormatterWrites() throws {
    var r = AuditRecord(
      time: 1_795_701_600.123, client: "ci \"runner\"\u{2028}é", source: "10.0.0.7:1",
      method: "POST", scheme: "http", host: "storage.googleapis.com", port: 8443,
      path: "/upload/storage/v1/b/x\\y/o", query: "token=abc", route: 3, decision: .deny,
      reason: "rate_limited", credential: "sa", tokenFingerprint: "sha256:1", status: 429)
    r.tokenScopes = "https://www.googleapis.com/auth/devstorage.read_write"
    r.via = "intercept"
    for logQueries in [false, true] {
      let e = try XCTUnwrap(parse(AuditFormatter(logQueries: logQueries).jsonLine(r)))
      XCTAssertEqual(e.client, r.client)
      XCTAssertEqual(e.method, "POST")
      XCTAssertEqual(e.host, r.host)
      XCTAssertEqual(e.port, 8443)
      XCTAssertEqual(e.path, r.path)
      XCTAssertEqual(e.route, 3)
      XCTAssertEqual(e.decision, "deny")
      XCTAssertEqual(e.reason, "rate_limited")
      XCTAssertEqual(e.scopes, r.tokenScopes)
      XCTAssertNil(e.audience)
      XCTAssertEqual(e.status, 429)
      XCTAssertEqual(e.time, r.time, accuracy: 0.0005)
    }
    var oidc = r
    oidc.tokenScopes = nil
    oidc.tokenAudience = "https://hello.run.app"
    oidc.client = nil
    oidc.route = nil
    oidc.port = nil
    let line = AuditFormatter().jsonLine(oidc)
    XCTAssertTrue(line.contains(#""audience":"https://hello.run.app""#), line)
    let e = try XCTUnwrap(parse(line))
    XCTAssertEqual(e.audience, "https://hello.run.app")
    XCTAssertNil(e.client)
    XCTAssertNil(e.route)
    XCTAssertNil(e.port)
  }

  func testRejectsWhatIsNotAnAuditRecord() {
    for bad in [
      "", "not json", "[1,2]", #"{"time":"x","method":"GET","host":"h","decision":"allow"}"#,
      #"{"method":"GET","host":"h","decision":"allow"}"#,
      #"{"time":"2026-11-30T00:00:00Z","method":"GET","host":"h","decision":"allow""#,
      #"{"time":"2026-11-30T00:00:00Z","method":"GET","host":"h","decision":"allow"} x"#,
      #"{"time":"2026-11-30T00:00:00Z","method":"GET","host":"h\u00","decision":"allow"}"#,
      "2026-11-26T14:00:00.123Z 127.0.0.1:51234 \"GET api.example.com /v1/things\" route=#1",
    ] {
      XCTAssertNil(parse(bad), bad)
    }
    let ok = parse(
      #"{"time":"2026-11-30T00:00:00Z","method":"GET","host":"h","decision":"allow","extra":{"a":[1,{"b":"}"}]}}"#
    )
    XCTAssertEqual(ok?.host, "h", "unknown nested fields are skipped")
  }

  func testTimestampsRoundTrip() {
    for t in [0.0, 1_795_701_600.123, 951_782_400.5, 4_102_444_799.999, 1_709_164_800] {
      let text = UTCTimestamp.iso8601(t)
      XCTAssertEqual(UTCTimestamp.parse(text) ?? -1, t, accuracy: 0.0005, text)
    }
    XCTAssertEqual(UTCTimestamp.parse("2026-11-30"), UTCTimestamp.parse("2026-11-30T00:00:00Z"))
    XCTAssertEqual(
      UTCTimestamp.parse("2026-11-30T02:00:00+02:00"), UTCTimestamp.parse("2026-11-30T00:00:00Z"))
    for bad in ["2026-13-01", "2026-11-30T25:00:00Z", "2026-11-30T00:00:00", "yesterday", ""] {
      XCTAssertNil(UTCTimestamp.parse(bad), bad)
    }
  }
}

final class PathTreeTests: XCTestCase {
  func testCollapsesVaryingSegmentsAndStaysBounded() {
    let tree = PathTree()
    for i in 0..<20_000 {
      tree.add(path: "/storage/v1/b/bucket-\(i % 9)/o/object-\(i).txt")
      tree.add(path: "/v1/items/\(i)")
    }
    tree.add(path: "/")
    XCTAssertEqual(tree.count, 40_001)
    func nodes(_ t: PathTree) -> Int { 1 + t.children.values.map(nodes).reduce(0, +) }
    XCTAssertLessThan(nodes(tree), 200, "20,000 distinct object names fold into *")
    let shown = tree.collapsed(fanout: 4).lines().map(\.path)
    XCTAssertEqual(shown, ["/", "/storage/v1/b/*/o/*", "/v1/items/*"])
    XCTAssertEqual(
      tree.collapsed(fanout: 4).endpoints().map { "/" + $0.joined(separator: "/") },
      ["/", "/storage/v1/b/*/o/*", "/v1/items/*"])
  }
}

final class UsageCollectorTests: XCTestCase {
  /// A hostile log naming a new client, route, method and scope set on every line: memory stays
  /// bounded (pairs, counters) and the report is built in time linear in what is kept (listing
  /// each client's routes used to scan every pair: 500,000 clients took minutes).
  func testDistinctNamesOnEveryLineStayBoundedAndFast() {
    let usage = UsageCollector(since: nil)
    let lines = 60_000
    let started = Date()
    for i in 0..<lines {
      var e = AuditEntry()
      e.time = 1_795_701_600
      e.client = "c\(i)"
      e.method = i % 2 == 0 ? "GET" : "M\(i)"
      e.host = "a.example.com"
      e.path = "/v1/x"
      e.route = i
      e.decision = "allow"
      e.scopes = "s\(i)"
      XCTAssertTrue(usage.add(e))
    }
    XCTAssertEqual(usage.records, lines)
    XCTAssertEqual(usage.usage.count, UsageCollector.maxPairs)
    XCTAssertEqual(usage.overflowRecords, lines - UsageCollector.maxPairs)
    var listed = 0
    for client in usage.clients { listed += usage.routes(of: client).count }
    XCTAssertEqual(listed, UsageCollector.maxPairs)
    XCTAssertLessThan(Date().timeIntervalSince(started), 20)
  }

  func testCountersPerPairAreBounded() {
    let usage = UsageCollector(since: nil)
    for i in 0..<1_000 {
      var e = AuditEntry()
      e.time = 1_795_701_600
      e.client = "one"
      e.method = "M\(i)"
      e.host = "a.example.com"
      e.route = 1
      e.decision = i % 2 == 0 ? "deny" : "allow"
      e.reason = "r\(i)"
      e.audience = "https://\(i).example"
      e.scopes = "s\(i)"
      usage.add(e)
    }
    let u = usage.usage[UsageKey(client: "one", route: 1)]!
    XCTAssertEqual(u.requests, 1_000)
    for counter in [u.methods, u.denials, u.audiences, u.scopeSets] {
      XCTAssertLessThanOrEqual(counter.count, 64)
    }
  }
}

final class UnifiedDiffTests: XCTestCase {
  /// The diff applies with the system's `patch` and gives the new text back.
  func testAppliesWithPatch() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "diff-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let old = (1...60).map { "line \($0)" }
    var new = old
    new.insert("inserted at top", at: 0)
    new[10] = "changed"
    new.removeSubrange(30...33)
    new.append("appended")
    for (a, b) in [(old, new), (old, []), ([], old), (["x"], ["y"])] {
      let oldText = a.isEmpty ? "" : a.joined(separator: "\n") + "\n"
      let newText = b.isEmpty ? "" : b.joined(separator: "\n") + "\n"
      let file = dir.appendingPathComponent("proxy.conf")
      try oldText.write(to: file, atomically: true, encoding: .utf8)
      let diff = UnifiedDiff.make(
        old: oldText, new: newText, oldName: "proxy.conf", newName: "proxy.conf (proposed)")
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/patch")
      p.arguments = ["-s", file.path]
      let pipe = Pipe()
      p.standardInput = pipe
      try p.run()
      pipe.fileHandleForWriting.write(Data(diff.utf8))
      try pipe.fileHandleForWriting.close()
      p.waitUntilExit()
      XCTAssertEqual(p.terminationStatus, 0, diff)
      XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), newText, diff)
    }
    XCTAssertEqual(UnifiedDiff.make(old: "a\n", new: "a\n", oldName: "x", newName: "y"), "")
  }
}
