// How route patterns relate to each other and to Google's API hosts: used by the parser's
// cross-checks (shadowed routes, OAuth2 tokens sent outside googleapis.com).

extension RoutePattern {
  /// Whether every request `other` matches is also matched by this pattern.
  func covers(_ other: RoutePattern) -> Bool {
    switch (host, other.host) {
    case (.any, _): break
    case (.suffix(let s), .suffix(let t)):
      guard t == s || t.hasSuffix("." + s) else { return false }
    case (.suffix(let s), .exact(let h)): guard h.hasSuffix("." + s) else { return false }
    case (.exact(let h1), .exact(let h2)): guard h1 == h2 else { return false }
    default: return false
    }
    if let p = port, other.port != p { return false }
    guard let pa = pathPrefix else { return true }
    guard let pb = other.pathPrefix else { return false }
    if pa.hasSuffix("/") { return pb.hasPrefix(pa) }
    return pb == pa || pb.hasPrefix(pa + "/")
  }
}

extension RoutePattern.Host {
  /// `googleapis.com` or a name under it.
  var isUnderGoogleAPIs: Bool {
    switch self {
    case .any: return false
    case .exact(let h), .suffix(let h):
      return h == "googleapis.com" || h.hasSuffix(".googleapis.com")
    }
  }
}
