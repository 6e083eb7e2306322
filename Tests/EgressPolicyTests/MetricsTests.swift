import EgressPolicy
import Foundation
import XCTest

/// A small parser for the Prometheus text format 0.0.4, strict enough to catch mistakes.
struct Exposition {
  struct Sample {
    var name: String
    var labels: [String: String]
    var value: Double
  }
  var help: [String: String] = [:]
  var type: [String: String] = [:]
  var samples: [Sample] = []

  init(_ text: String) throws {
    struct Bad: Error, CustomStringConvertible { var description: String }
    XCTAssertTrue(text.hasSuffix("\n"))
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
      if line.hasPrefix("# HELP ") {
        let rest = line.dropFirst(7)
        let sp = rest.firstIndex(of: " ") ?? rest.endIndex
        help[String(rest[..<sp])] = String(rest[sp...].dropFirst())
        continue
      }
      if line.hasPrefix("# TYPE ") {
        let parts = line.dropFirst(7).split(separator: " ")
        guard parts.count == 2, ["counter", "gauge", "histogram"].contains(parts[1]) else {
          throw Bad(description: "bad TYPE line \(line)")
        }
        type[String(parts[0])] = String(parts[1])
        continue
      }
      guard !line.hasPrefix("#"), !line.isEmpty else {
        throw Bad(description: "unexpected \(line)")
      }
      var i = line.startIndex
      while i < line.endIndex,
        line[i].isLetter || line[i].isNumber || line[i] == "_" || line[i] == ":"
      {
        i = line.index(after: i)
      }
      let name = String(line[..<i])
      guard let f = name.first, f.isLetter || f == "_" else {
        throw Bad(description: "bad name in \(line)")
      }
      var labels: [String: String] = [:]
      if i < line.endIndex && line[i] == "{" {
        i = line.index(after: i)
        while line[i] != "}" {
          let eq = line[i...].firstIndex(of: "=")!
          let label = String(line[i..<eq])
          guard label.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw Bad(description: "bad label name in \(line)")
          }
          i = line.index(after: eq)
          guard line[i] == "\"" else { throw Bad(description: "unquoted label value in \(line)") }
          i = line.index(after: i)
          var value = ""
          while line[i] != "\"" {
            if line[i] == "\\" {
              i = line.index(after: i)
              switch line[i] {
              case "\\": value.append("\\")
              case "\"": value.append("\"")
              case "n": value.append("\n")
              default: throw Bad(description: "bad escape in \(line)")
              }
            } else {
              value.append(line[i])
            }
            i = line.index(after: i)
          }
          labels[label] = value
          i = line.index(after: i)
          if line[i] == "," { i = line.index(after: i) }
        }
        i = line.index(after: i)
      }
      guard i < line.endIndex, line[i] == " " else { throw Bad(description: "no value in \(line)") }
      let valueText = line[line.index(after: i)...]
      let value: Double
      switch valueText {
      case "+Inf": value = .infinity
      case "-Inf": value = -.infinity
      case "NaN": value = .nan
      default:
        guard let v = Double(valueText) else { throw Bad(description: "bad value in \(line)") }
        value = v
      }
      samples.append(Sample(name: name, labels: labels, value: value))
    }
  }

  func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
    samples.first { $0.name == name && $0.labels == labels }?.value
  }
}

final class MetricsTests: XCTestCase {
  func testExpositionParsesBack() throws {
    let m = Metrics(routeNames: ["api.example.com/v1", "odd \"name\"\\x\nnext", "dup", "dup"])
    m.recordRequest(
      routeIndex: 0, status: 200, client: "ci", durationSeconds: 0.003, bytesIn: 10, bytesOut: 100)
    m.recordRequest(
      routeIndex: 0, status: 204, client: "ci", durationSeconds: 0.2, bytesIn: 0, bytesOut: 0)
    m.recordRequest(
      routeIndex: 0, status: 503, client: "ci", durationSeconds: 0.01, bytesIn: 0, bytesOut: 20)
    m.recordRequest(
      routeIndex: 1, status: 200, client: nil, durationSeconds: 30, bytesIn: 1, bytesOut: 1)
    m.recordRequest(
      routeIndex: nil, status: 403, client: "bob", durationSeconds: 0.0001, bytesIn: 0, bytesOut: 0)
    m.recordRequest(
      routeIndex: 3, status: 0, client: "x", durationSeconds: 1, bytesIn: 0, bytesOut: 0)
    m.connectionOpened()
    m.connectionOpened()
    m.connectionClosed()
    m.tunnelOpened()
    m.tokenMinted(credential: "ci")
    m.tokenMinted(credential: "ci")
    m.tokenMintFailed(credential: "runner")
    m.tokenCacheHit(credential: "ci")
    m.upstreamError(kind: "tls")
    m.denial(reason: "no_route")
    m.denial(reason: "rate_limited")
    m.denial(reason: "rate_limited")

    let text = m.render()
    let e = try Exposition(text)
    let families = [
      "credproxy_requests_total": "counter", "credproxy_request_duration_seconds": "histogram",
      "credproxy_bytes_in_total": "counter", "credproxy_bytes_out_total": "counter",
      "credproxy_open_connections": "gauge", "credproxy_open_tunnels": "gauge",
      "credproxy_token_mints_total": "counter", "credproxy_token_mint_failures_total": "counter",
      "credproxy_token_cache_hits_total": "counter", "credproxy_upstream_errors_total": "counter",
      "credproxy_denials_total": "counter",
    ]
    for (name, type) in families {
      XCTAssertEqual(e.type[name], type, name)
      XCTAssertNotNil(e.help[name], name)
    }
    // Every sample belongs to a declared family.
    for s in e.samples {
      let family = ["_bucket", "_sum", "_count"].reduce(s.name) { n, suffix in
        e.type[n] == nil && n.hasSuffix(suffix) ? String(n.dropLast(suffix.count)) : n
      }
      XCTAssertNotNil(e.type[family], s.name)
    }

    XCTAssertEqual(
      e.value(
        "credproxy_requests_total",
        ["route": "api.example.com/v1", "status_class": "2xx", "client": "ci"]), 2)
    XCTAssertEqual(
      e.value(
        "credproxy_requests_total",
        ["route": "api.example.com/v1", "status_class": "5xx", "client": "ci"]), 1)
    XCTAssertEqual(
      e.value(
        "credproxy_requests_total",
        ["route": "odd \"name\"\\x\nnext", "status_class": "2xx", "client": ""]), 1,
      "label values are escaped and parse back")
    XCTAssertEqual(
      e.value(
        "credproxy_requests_total", ["route": "none", "status_class": "4xx", "client": "bob"]), 1)
    XCTAssertEqual(
      e.value(
        "credproxy_requests_total", ["route": "dup #4", "status_class": "other", "client": "x"]), 1)

    // Histogram: cumulative buckets ending in +Inf == _count.
    let buckets = e.samples.filter { $0.name == "credproxy_request_duration_seconds_bucket" }
    XCTAssertEqual(
      buckets.map { $0.labels["le"]! },
      ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"])
    for (a, b) in zip(buckets, buckets.dropFirst()) { XCTAssertLessThanOrEqual(a.value, b.value) }
    XCTAssertEqual(buckets.map(\.value), [2, 3, 3, 3, 3, 4, 4, 5, 5, 5, 5, 6])
    XCTAssertEqual(e.value("credproxy_request_duration_seconds_count"), 6)
    XCTAssertEqual(
      try XCTUnwrap(e.value("credproxy_request_duration_seconds_sum")), 31.2131, accuracy: 1e-9)

    XCTAssertEqual(e.value("credproxy_bytes_in_total"), 11)
    XCTAssertEqual(e.value("credproxy_bytes_out_total"), 121)
    XCTAssertEqual(e.value("credproxy_open_connections"), 1)
    XCTAssertEqual(e.value("credproxy_open_tunnels"), 1)
    XCTAssertEqual(e.value("credproxy_token_mints_total", ["credential": "ci"]), 2)
    XCTAssertEqual(e.value("credproxy_token_mint_failures_total", ["credential": "runner"]), 1)
    XCTAssertEqual(e.value("credproxy_token_cache_hits_total", ["credential": "ci"]), 1)
    XCTAssertEqual(e.value("credproxy_upstream_errors_total", ["kind": "tls"]), 1)
    XCTAssertEqual(e.value("credproxy_denials_total", ["reason": "rate_limited"]), 2)
    XCTAssertEqual(Metrics.contentType, "text/plain; version=0.0.4; charset=utf-8")
    XCTAssertEqual(Metrics.escapeLabel("a\\b\"c\nd"), "a\\\\b\\\"c\\nd")
  }

  func testEmptyRegistryIsValid() throws {
    let e = try Exposition(Metrics(routeNames: []).render())
    XCTAssertEqual(e.value("credproxy_request_duration_seconds_bucket", ["le": "+Inf"]), 0)
    XCTAssertEqual(e.value("credproxy_open_connections"), 0)
    XCTAssertEqual(e.type.count, 11)
  }

  func testConcurrentUpdates() throws {
    let m = Metrics(routeNames: ["r"], shards: 4)
    DispatchQueue.concurrentPerform(iterations: 8) { i in
      for _ in 0..<5000 {
        m.recordRequest(
          routeIndex: 0, status: 200, client: "c\(i % 2)", durationSeconds: 0.001, bytesIn: 1,
          bytesOut: 2)
        m.connectionOpened()
        m.connectionClosed()
        m.denial(reason: "x")
      }
    }
    let e = try Exposition(m.render())
    XCTAssertEqual(e.value("credproxy_request_duration_seconds_count"), 40_000)
    XCTAssertEqual(
      e.value("credproxy_requests_total", ["route": "r", "status_class": "2xx", "client": "c0"]),
      20_000)
    XCTAssertEqual(e.value("credproxy_bytes_out_total"), 80_000)
    XCTAssertEqual(e.value("credproxy_open_connections"), 0)
    XCTAssertEqual(e.value("credproxy_denials_total", ["reason": "x"]), 40_000)
  }
}
