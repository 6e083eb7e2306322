import Foundation

/// What a `source exec` program prints on stdout: `{"token": "...", "expires_in": N}` or
/// `{"token": "...", "expires_at": "RFC 3339"}`. Pure. Errors say what was expected, never what was
/// printed (the output may be a token, or anything).
public enum ProgramTokenOutput {
  /// Why the output is not a token: what was expected, never what was printed.
  public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
  }

  public static let expected =
    "expected {\"token\": \"…\", \"expires_in\": SECONDS} or {\"token\": \"…\", \"expires_at\": \"RFC 3339\"} on stdout"

  public static func parse(_ stdout: [UInt8], now: Double) -> Result<MintedToken, Problem> {
    guard let object = JSONReading.object(stdout) else {
      return .failure(Problem("printed no JSON object; \(expected)"))
    }
    guard let token = object["token"] as? String, !token.isEmpty else {
      return .failure(Problem("printed no \"token\" string; \(expected)"))
    }
    guard isHeaderSafe(token) else {
      return .failure(Problem("printed a token with characters a header cannot carry; \(expected)"))
    }
    let expiresAt: Double
    if let seconds = JSONReading.numberOrNumericString(object["expires_in"]) {
      guard seconds > 0, seconds.isFinite else {
        return .failure(Problem("printed an expires_in that is not a positive number; \(expected)"))
      }
      expiresAt = now + seconds
    } else if let text = object["expires_at"] as? String {
      guard let at = RFC3339.parse(text) else {
        return .failure(Problem("printed an expires_at that is not an RFC 3339 time; \(expected)"))
      }
      expiresAt = at
    } else {
      return .failure(Problem("printed neither expires_in nor expires_at; \(expected)"))
    }
    guard expiresAt > now else {
      return .failure(Problem("printed a token that has already expired"))
    }
    return .success(MintedToken(value: token, expiresAt: expiresAt, kind: .accessToken))
  }

  /// Visible ASCII only: the token becomes (part of) a header value.
  public static func isHeaderSafe(_ token: String) -> Bool {
    token.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
  }
}
