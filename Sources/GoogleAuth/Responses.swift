import Foundation

/// Which kind of token a cache entry or a minted token is.
public enum TokenKind: String, Sendable, Hashable, Comparable {
  /// An OAuth 2.0 access token (`Authorization: Bearer ya29…`), keyed by scopes.
  case accessToken
  /// An OIDC ID token (a JWT), keyed by audience.
  case idToken

  public static func < (lhs: TokenKind, rhs: TokenKind) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A token obtained from an endpoint. `description` shows the fingerprint, never the token.
public struct MintedToken: Sendable, Equatable, CustomStringConvertible {
  public var value: String
  /// Seconds since the epoch.
  public var expiresAt: Double
  public var kind: TokenKind

  public init(value: String, expiresAt: Double, kind: TokenKind) {
    self.value = value
    self.expiresAt = expiresAt
    self.kind = kind
  }

  public var expiresAtDate: Date { Date(timeIntervalSince1970: expiresAt) }

  public var description: String {
    "\(kind) \(fingerprint(value)) expiring at \(Int(expiresAt))"
  }
}

/// A failed token request: an HTTP error from the endpoint, a malformed answer, or (status 0) a
/// transport or local failure. Messages never contain a token or a response body that might.
public struct TokenEndpointError: Error, Sendable, Equatable, CustomStringConvertible {
  /// HTTP status; 0 when no HTTP response was obtained.
  public var status: Int
  /// OAuth `error` (`invalid_grant`), Google API error `status` (`PERMISSION_DENIED`), or one of
  /// ours: `invalid_response`, `metadata_flavor_missing`, `transport`, `local`.
  public var error: String?
  /// OAuth `error_description`, Google API error `message`, or our explanation.
  public var errorDescription: String?
  /// Worth retrying (google-auth's rule: HTTP 408/429/500/503/504, or `error` in
  /// internal_failure/server_error/temporarily_unavailable; transport failures too).
  public var retryable: Bool
  /// Who answered: "token endpoint", "metadata server", "IAM Credentials", …
  public var source: String

  public init(
    status: Int, error: String?, errorDescription: String?, retryable: Bool,
    source: String = "token endpoint"
  ) {
    self.status = status
    self.error = error
    self.errorDescription = errorDescription
    self.retryable = retryable
    self.source = source
  }

  /// An error whose `retryable` follows google-auth's classification.
  public static func classified(
    status: Int, error: String?, errorDescription: String?, source: String = "token endpoint"
  ) -> TokenEndpointError {
    TokenEndpointError(
      status: status, error: error, errorDescription: errorDescription,
      retryable: TokenResponses.isRetryable(status: status, error: error), source: source)
  }

  /// No HTTP response (connect failure, timeout, TLS): retryable.
  public static func transport(_ message: String, source: String = "token endpoint")
    -> TokenEndpointError
  {
    TokenEndpointError(
      status: 0, error: "transport", errorDescription: message, retryable: true, source: source)
  }

  /// A failure before any request (e.g. the key cannot sign): not retryable.
  public static func local(_ message: String, source: String = "credentials")
    -> TokenEndpointError
  {
    TokenEndpointError(
      status: 0, error: "local", errorDescription: message, retryable: false, source: source)
  }

  public var description: String {
    var text = source
    if status != 0 { text += " HTTP \(status)" }
    if let error { text += ": \(error)" }
    if let errorDescription, !errorDescription.isEmpty { text += ": \(errorDescription)" }
    return text
  }
}

/// Parsers for every token response credproxy receives. `body` is the raw response body; pure.
public enum TokenResponses {
  public static let retryableStatuses: Set<Int> = [408, 429, 500, 503, 504]
  public static let retryableErrors: Set<String> = [
    "internal_failure", "server_error", "temporarily_unavailable",
  ]

  /// google-auth's retry rule.
  public static func isRetryable(status: Int, error: String?) -> Bool {
    retryableStatuses.contains(status) || error.map(retryableErrors.contains) == true
  }

  /// Lifetime assumed when a 200 carries no `expires_in`.
  public static let defaultExpiresIn: Double = 3600

  // MARK: OAuth token endpoint

  /// A token-endpoint access-token response (`{"access_token","expires_in",…}`, `expires_in` a
  /// number or a numeric string). `requestTime` is when the request was sent (seconds since the
  /// epoch); expiry = requestTime + expires_in.
  public static func accessToken(
    status: Int, body: [UInt8], requestTime: Double, source: String = "token endpoint"
  ) -> Result<MintedToken, TokenEndpointError> {
    let json: [String: Any]
    switch successObject(status: status, body: body, source: source) {
    case .failure(let error): return .failure(error)
    case .success(let object): json = object
    }
    guard let token = json["access_token"] as? String, !token.isEmpty else {
      return .failure(invalid(status, "the 200 response has no access_token", source))
    }
    var expiresIn = defaultExpiresIn
    if let raw = json["expires_in"], !(raw is NSNull) {
      guard let seconds = JSONReading.numberOrNumericString(raw), seconds.isFinite, seconds >= 0
      else {
        return .failure(invalid(status, "the 200 response has an invalid expires_in", source))
      }
      expiresIn = seconds
    }
    return .success(
      MintedToken(value: token, expiresAt: requestTime + expiresIn, kind: .accessToken))
  }

  /// A token-endpoint ID-token response (`{"id_token":"<JWT>"}`); expiry is the JWT's `exp`.
  public static func idToken(status: Int, body: [UInt8], source: String = "token endpoint")
    -> Result<MintedToken, TokenEndpointError>
  {
    let json: [String: Any]
    switch successObject(status: status, body: body, source: source) {
    case .failure(let error): return .failure(error)
    case .success(let object): json = object
    }
    guard let token = json["id_token"] as? String, !token.isEmpty else {
      return .failure(invalid(status, "the 200 response has no id_token", source))
    }
    return idTokenFromJWT(token, status: status, source: source)
  }

  // MARK: Metadata server

  /// `…/service-accounts/default/token`: JSON like the token endpoint's. The response must carry
  /// `Metadata-Flavor: Google`.
  public static func metadataAccessToken(
    status: Int, headers: [(String, String)], body: [UInt8], requestTime: Double
  ) -> Result<MintedToken, TokenEndpointError> {
    if let error = metadataCheck(status: status, headers: headers, body: body) {
      return .failure(error)
    }
    return accessToken(status: status, body: body, requestTime: requestTime, source: metadata)
  }

  /// `…/service-accounts/default/identity?…&format=full`: the raw JWT as text. The response must
  /// carry `Metadata-Flavor: Google`.
  public static func metadataIDToken(status: Int, headers: [(String, String)], body: [UInt8])
    -> Result<MintedToken, TokenEndpointError>
  {
    if let error = metadataCheck(status: status, headers: headers, body: body) {
      return .failure(error)
    }
    let token = String(decoding: body, as: UTF8.self).trimmingCharacters(
      in: .whitespacesAndNewlines)
    return idTokenFromJWT(token, status: status, source: metadata)
  }

  /// True when `headers` has `Metadata-Flavor: Google` (name case-insensitive).
  public static func hasMetadataFlavor(_ headers: [(String, String)]) -> Bool {
    headers.contains {
      $0.0.lowercased() == MetadataServer.flavorHeader.lowercased()
        && $0.1.trimmingCharacters(in: .whitespaces) == MetadataServer.flavorValue
    }
  }

  // MARK: IAM Credentials

  /// `:generateAccessToken` → `{"accessToken","expireTime":"<RFC 3339>"}`.
  public static func iamAccessToken(status: Int, body: [UInt8])
    -> Result<MintedToken, TokenEndpointError>
  {
    let json: [String: Any]
    switch successObject(status: status, body: body, source: iam) {
    case .failure(let error): return .failure(error)
    case .success(let object): json = object
    }
    guard let token = json["accessToken"] as? String, !token.isEmpty else {
      return .failure(invalid(status, "the 200 response has no accessToken", iam))
    }
    guard let text = json["expireTime"] as? String, let expiry = RFC3339.parse(text) else {
      return .failure(invalid(status, "the 200 response has no valid RFC 3339 expireTime", iam))
    }
    return .success(MintedToken(value: token, expiresAt: expiry, kind: .accessToken))
  }

  /// `:generateIdToken` → `{"token":"<JWT>"}`; expiry is the JWT's `exp`.
  public static func iamIDToken(status: Int, body: [UInt8])
    -> Result<MintedToken, TokenEndpointError>
  {
    let json: [String: Any]
    switch successObject(status: status, body: body, source: iam) {
    case .failure(let error): return .failure(error)
    case .success(let object): json = object
    }
    guard let token = json["token"] as? String, !token.isEmpty else {
      return .failure(invalid(status, "the 200 response has no token", iam))
    }
    return idTokenFromJWT(token, status: status, source: iam)
  }

  // MARK: Shared

  static let metadata = "metadata server"
  static let iam = "IAM Credentials"

  /// The JSON object of a successful response, or the error the response describes. Errors come
  /// from non-200 statuses, non-JSON bodies, and 200 bodies carrying `error`.
  static func successObject(status: Int, body: [UInt8], source: String)
    -> Result<[String: Any], TokenEndpointError>
  {
    let json = JSONReading.object(body)
    if status == 200, let json, json["error"] == nil || json["error"] is NSNull {
      return .success(json)
    }
    return .failure(errorResponse(status: status, body: body, json: json, source: source))
  }

  /// Describes an error response. A non-JSON body is echoed (≤ 100 printable characters) only
  /// when the status is not 200: a 200 body may hold a token.
  static func errorResponse(status: Int, body: [UInt8], json: [String: Any]?, source: String)
    -> TokenEndpointError
  {
    guard let json else {
      let detail: String
      if body.isEmpty {
        detail = "empty response body"
      } else if status == 200 {
        detail = "the 200 response is not a JSON object (\(body.count) bytes)"
      } else {
        let text = String(decoding: body.prefix(400), as: UTF8.self)
          .trimmingCharacters(in: .whitespacesAndNewlines)
        detail = "non-JSON response: " + sanitizedForMessage(text, limit: 100)
      }
      return .classified(
        status: status, error: status == 200 ? "invalid_response" : nil,
        errorDescription: detail, source: source)
    }
    var code: String?
    var detail: String?
    if let text = json["error"] as? String {
      // OAuth 2.0: {"error":"invalid_grant","error_description":"…"}
      code = text
      detail = json["error_description"] as? String
    } else if let object = json["error"] as? [String: Any] {
      // Google APIs: {"error":{"code":403,"message":"…","status":"PERMISSION_DENIED"}}
      code = object["status"] as? String
      if code == nil, let number = JSONReading.number(object["code"]) {
        code = String(Int(number))
      }
      detail = object["message"] as? String
    }
    if code == nil && detail == nil {
      detail = "HTTP \(status) with no error details"
    }
    return .classified(
      status: status, error: code.map { sanitizedForMessage($0, limit: 60) },
      errorDescription: detail.map { sanitizedForMessage($0, limit: ErrorText.limit) },
      source: source)
  }

  static func invalid(_ status: Int, _ detail: String, _ source: String) -> TokenEndpointError {
    .classified(status: status, error: "invalid_response", errorDescription: detail, source: source)
  }

  static func idTokenFromJWT(_ token: String, status: Int, source: String)
    -> Result<MintedToken, TokenEndpointError>
  {
    guard let expiry = JWT.expiry(of: token) else {
      return .failure(
        invalid(status, "the ID token is not a JWT with a numeric exp claim", source))
    }
    return .success(MintedToken(value: token, expiresAt: expiry, kind: .idToken))
  }

  static func metadataCheck(status: Int, headers: [(String, String)], body: [UInt8])
    -> TokenEndpointError?
  {
    guard hasMetadataFlavor(headers) else {
      return TokenEndpointError(
        status: status, error: "metadata_flavor_missing",
        errorDescription:
          "the response lacks \"Metadata-Flavor: Google\": not the metadata server",
        retryable: false, source: metadata)
    }
    guard status == 200 else {
      return errorResponse(
        status: status, body: body, json: JSONReading.object(body), source: metadata)
    }
    return nil
  }
}
