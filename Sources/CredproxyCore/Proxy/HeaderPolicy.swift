import HTTP1
import Wire

/// Which header fields cross the proxy. Hop-by-hop fields describe one connection, not the message
/// (RFC 9110 §7.6.1), so they stop here in both directions; framing fields are re-made by whoever
/// frames the next hop (curl upstream, us towards the client).
///
/// Names are compared ASCII-case-insensitively on their bytes: this runs for every header of
/// every request and response, and lowercasing Strings showed up in profiles.
enum HeaderPolicy {
  /// Never forwarded upstream: the hop-by-hop fields (`Wire.HeaderNames.hopByHop`), the
  /// caller's credentials for this proxy (`proxy-authorization`), the framing fields (curl
  /// frames the upstream request), `host` (curl sets it from the target URL) and `expect`.
  static let requestDrop: [String] =
    HeaderNames.hopByHop + ["proxy-authorization"] + HeaderNames.framing + ["host", "expect"]
  /// Never forwarded to the client: the hop-by-hop fields, the upstream's challenge for its own
  /// proxy (`proxy-authenticate`) and the framing fields, which `UpstreamHeadReader` reads and
  /// replaces by the framing credproxy computes; a `Connection`-named field cannot remove those.
  static let responseDrop: [String] =
    HeaderNames.hopByHop + ["proxy-authenticate"] + HeaderNames.framing
  private static let requestDropSet = HeaderNameSet(requestDrop)
  private static let responseDropSet = HeaderNameSet(responseDrop)

  /// `name` equals `lowercase` ignoring ASCII case (`lowercase` must be lowercase ASCII).
  @inline(__always)
  static func nameIs(_ name: String, _ lowercase: String) -> Bool {
    HeaderNames.equal(name, lowercase)
  }

  /// `name` is `injected` once case and `_`/`-` are folded: `X_Api_Key` is `X-Api-Key` to CGI
  /// and WSGI servers, which would merge a caller's copy into the injected credential.
  static func spellsSameField(_ name: String, _ injected: String) -> Bool {
    guard name.utf8.count == injected.utf8.count else { return false }
    for (c, l) in zip(name.utf8, injected.utf8) {
      var folded = c >= 0x41 && c <= 0x5A ? c | 0x20 : c
      if folded == 0x5F { folded = 0x2D }
      if folded != (l == 0x5F ? 0x2D : l) { return false }
    }
    return true
  }

  static func isListed(_ name: String, in list: [String]) -> Bool {
    list.contains { nameIs(name, $0) }
  }

  /// Names listed in `Connection` (lowercased): hop-by-hop by declaration. Usually empty:
  /// `close` and `keep-alive`, the usual values, are recognised on the bytes without a copy.
  static func connectionTokens(_ headers: [HeaderField]) -> [String] {
    var tokens: [String] = []
    for h in headers where nameIs(h.name, "connection") {
      // The usual whole value: nothing to split.
      if HeaderNames.equal(h.value, "keep-alive") || HeaderNames.equal(h.value, "close") {
        continue
      }
      for t in h.value.utf8.split(separator: UInt8(ascii: ",")) {
        var token = Substring(t)
        while let f = token.utf8.first, f == 0x20 || f == 0x09 { token = token.dropFirst() }
        while let l = token.utf8.last, l == 0x20 || l == 0x09 { token = token.dropLast() }
        if token.isEmpty || HeaderNames.equal(String(token), "close")
          || HeaderNames.equal(String(token), "keep-alive")
        {
          continue
        }
        tokens.append(token.lowercased())
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
      if requestDropSet.contains(h.name) { continue }
      if let injected, spellsSameField(h.name, injected) { continue }
      if !named.isEmpty && isListed(h.name, in: named) { continue }
      if !sawAccept && nameIs(h.name, "accept") { sawAccept = true }
      lines.append(curlLine(h.name, h.value))
    }
    // curl would add `Accept: */*` on its own; the caller sent none, so send none.
    if !sawAccept { lines.append("Accept:") }
    return lines
  }

  /// curl reads `Name:` as "remove this header"; an empty value must be written `Name;`.
  static func curlLine(_ name: String, _ value: String) -> String {
    value.isEmpty ? name + ";" : name + ": " + value
  }

  static func clientHeaders(_ headers: [HeaderField]) -> [HeaderField] {
    let named = connectionTokens(headers)
    return headers.filter {
      !responseDropSet.contains($0.name) && (named.isEmpty || !isListed($0.name, in: named))
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
