import Wire

/// OAuth scope sets in one canonical form, so that `"a b"`, `["b","a"]` and `"a,b"` share a cache
/// entry.
public enum Scopes {
  public static let cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

  /// `ScopeList.normalize` (split on spaces, commas and whitespace, de-duplicated, sorted); an
  /// empty result becomes `[cloudPlatform]` (the Workflows default).
  public static func normalize(_ words: [String]) -> [String] {
    let scopes = ScopeList.normalize(words)
    return scopes.isEmpty ? [cloudPlatform] : scopes
  }

  /// A single string holding one or more scopes (space- or comma-separated).
  public static func normalize(_ text: String) -> [String] { normalize([text]) }

  /// The cache-key form: the normalised scopes joined by single spaces.
  public static func cacheKey(_ words: [String]) -> String {
    normalize(words).joined(separator: " ")
  }
}
