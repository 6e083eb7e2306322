import HTTP1

/// Which header fields cross the proxy. Hop-by-hop fields describe one connection, not the message
/// (RFC 9110 §7.6.1), so they stop here in both directions; framing fields are re-made by whoever
/// frames the next hop (curl upstream, us towards the client).
enum HeaderPolicy {
  /// Never forwarded upstream. Host is set by curl from the target URL.
  static let requestDrop: Set<String> = [
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "upgrade", "transfer-encoding", "content-length", "host", "expect",
  ]
  /// Never forwarded to the client.
  static let responseDrop: Set<String> = [
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
    "upgrade", "transfer-encoding",
  ]

  /// Names listed in `Connection` (lowercased): hop-by-hop by declaration.
  static func connectionTokens<S: Sequence>(_ headers: S) -> Set<String>
  where S.Element == HeaderField {
    var tokens: Set<String> = []
    for h in headers where h.name.lowercased() == "connection" {
      for t in h.value.split(separator: ",") {
        let token = t.trimmingCharacters(in: " \t").lowercased()
        if !token.isEmpty { tokens.insert(token) }
      }
    }
    return tokens
  }

  /// The caller's headers as curl header lines, minus hop-by-hop ones and any header the route's
  /// credential replaces (a caller's own `Authorization` is replaced, never merged).
  static func upstreamLines(_ headers: [HeaderField], replacing injected: String?) -> [String] {
    let named = connectionTokens(headers)
    var lines: [String] = []
    lines.reserveCapacity(headers.count + 2)
    var sawAccept = false
    for h in headers {
      let lower = h.name.lowercased()
      if requestDrop.contains(lower) || named.contains(lower) || lower == injected { continue }
      if lower == "accept" { sawAccept = true }
      lines.append(curlLine(h.name, h.value))
    }
    // curl would add `Accept: */*` on its own; the caller sent none, so send none.
    if !sawAccept { lines.append("Accept:") }
    return lines
  }

  /// curl reads `Name:` as "remove this header"; an empty value must be written `Name;`.
  static func curlLine(_ name: String, _ value: String) -> String {
    value.isEmpty ? "\(name);" : "\(name): \(value)"
  }

  static func clientHeaders(_ headers: [HeaderField]) -> [HeaderField] {
    let named = connectionTokens(headers)
    return headers.filter {
      let lower = $0.name.lowercased()
      return !responseDrop.contains(lower) && !named.contains(lower)
    }
  }
}

extension String {
  func trimmingCharacters(in set: String) -> String {
    var s = Substring(self)
    while let f = s.first, set.contains(f) { s.removeFirst() }
    while let l = s.last, set.contains(l) { s.removeLast() }
    return String(s)
  }
}

extension Substring {
  func trimmingCharacters(in set: String) -> String {
    String(self).trimmingCharacters(in: set)
  }
}
