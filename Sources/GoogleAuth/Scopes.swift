/// OAuth scope sets in one canonical form, so that `"a b"`, `["b","a"]` and `"a,b"` share a cache
/// entry.
public enum Scopes {
  public static let cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

  /// Splits every word on spaces, tabs, newlines and commas, drops empties, de-duplicates and
  /// sorts. An empty result becomes `[cloudPlatform]` (the Workflows default).
  public static func normalize(_ words: [String]) -> [String] {
    var seen = Set<String>()
    for word in words {
      for part in word.split(whereSeparator: { $0 == " " || $0 == "," || $0.isWhitespace }) {
        seen.insert(String(part))
      }
    }
    return seen.isEmpty ? [cloudPlatform] : seen.sorted()
  }

  /// A single string holding one or more scopes (space- or comma-separated).
  public static func normalize(_ text: String) -> [String] { normalize([text]) }

  /// The cache-key form: the normalised scopes joined by single spaces.
  public static func cacheKey(_ words: [String]) -> String {
    normalize(words).joined(separator: " ")
  }
}
