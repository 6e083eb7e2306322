/// The one sanitiser for text that comes from a token endpoint (or is built around it) and goes to
/// callers, `/status`, `/readyz` or the log. Such text is untrusted: an endpoint (or whoever sits
/// in its place) can put control characters, terminal escapes, megabytes, or a secret it was sent
/// into `error_description`.
public enum ErrorText {
  /// Longest text kept, in characters; longer text ends in `...`.
  public static let limit = 200
  /// What a secret is replaced with.
  public static let redacted = "[redacted]"
  /// Secrets shorter than this are not searched for (a one-letter "secret" would blank out text).
  static let shortestSecret = 6

  /// Printable ASCII only (anything else becomes `?`), every occurrence of every secret replaced
  /// by `[redacted]` (before the cap, so a secret cut by the cap is not half shown), then capped.
  /// A PEM block among `secrets` counts line by line, so key material is found in any excerpt.
  public static func sanitize(_ text: String, secrets: [String], limit: Int = limit) -> String {
    var out = ""
    out.unicodeScalars.reserveCapacity(min(text.utf8.count, limit * 4))
    for scalar in text.unicodeScalars {
      out.unicodeScalars.append(scalar.value >= 0x20 && scalar.value < 0x7F ? scalar : "?")
    }
    for needle in needles(secrets) where out.contains(needle) {
      out = out.replacing(needle, with: redacted)
    }
    guard out.unicodeScalars.count > limit else { return out }
    return String(String.UnicodeScalarView(out.unicodeScalars.prefix(limit))) + "..."
  }

  /// The strings to look for, longest first (a secret containing another is redacted whole).
  public static func needles(_ secrets: [String]) -> [String] {
    var found = Set<String>()
    for secret in secrets {
      let trimmed = secret.trimmingWhitespace()
      if trimmed.utf8.count >= shortestSecret { found.insert(trimmed) }
      if trimmed.contains("\n") {
        for line in trimmed.split(whereSeparator: \.isNewline) {
          let l = String(line).trimmingWhitespace()
          if l.utf8.count >= 16 && !l.hasPrefix("-----") { found.insert(l) }
        }
      }
    }
    return found.sorted { $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1 }
  }
}

extension String {
  fileprivate func trimmingWhitespace() -> String {
    let scalars = unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
    return String(scalars[first...last])
  }
}

extension TokenEndpointError {
  /// This error with `error`, `errorDescription` and `source` passed through `ErrorText`.
  public func sanitized(secrets: [String]) -> TokenEndpointError {
    var copy = self
    copy.error = error.map { ErrorText.sanitize($0, secrets: secrets, limit: 60) }
    copy.errorDescription = errorDescription.map { ErrorText.sanitize($0, secrets: secrets) }
    copy.source = ErrorText.sanitize(source, secrets: secrets)
    return copy
  }
}
