/// OAuth scope lists in one canonical form, so that `"a b"`, `["b","a"]` and `"a,b"` are the
/// same set: in `proxy.conf`, in token-cache keys and in token requests.
public enum ScopeList {
  /// Splits every word on spaces, commas and other whitespace (tabs, newlines), drops empties,
  /// de-duplicates and sorts. No default: an empty input gives `[]`.
  public static func normalize<S: Sequence>(_ words: S) -> [String]
  where S.Element: StringProtocol {
    var seen = Set<String>()
    for word in words {
      for part in word.split(whereSeparator: { $0 == " " || $0 == "," || $0.isWhitespace }) {
        seen.insert(String(part))
      }
    }
    return seen.sorted()
  }
}

/// Google endpoints that more than one module names.
public enum GoogleEndpoints {
  /// IAM Credentials (`generateAccessToken`, `generateIdToken`), scheme and authority only.
  public static let iamCredentials = "https://iamcredentials.googleapis.com"
}
