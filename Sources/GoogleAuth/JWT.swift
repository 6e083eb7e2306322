import Foundation

/// A service-account key together with its loaded signer: what JWT assertions are made from.
/// Build one per key file at load time and share it (it is immutable and thread-safe).
public struct ServiceAccountSigner: Sendable {
  public let account: ServiceAccountKey
  public let signer: RSASigner

  public init(account: ServiceAccountKey, signer: RSASigner) {
    self.account = account
    self.signer = signer
  }

  /// Loads `account.privateKeyPEM`.
  public init(_ account: ServiceAccountKey) throws {
    do {
      self.init(account: account, signer: try RSASigner(pem: account.privateKeyPEM))
    } catch let error as SigningError {
      throw SigningError("service account \(account.clientEmail): \(error.message)")
    }
  }
}

/// Self-signed JWT assertions for the JWT-bearer grant (RFC 7523), signed RS256.
public enum JWTAssertion {
  /// `exp - iat`; Google rejects more than one hour.
  public static let lifetime = 3600

  /// An assertion for an access token: claims `iss`, `scope` (scopes joined by single spaces),
  /// `aud`, `iat`, `exp`. `audience` defaults to the key file's `token_uri`; `now` is seconds since
  /// the epoch (pass `now - 10` to backdate for clock skew, as golang/oauth2 does).
  public static func accessToken(
    key: ServiceAccountSigner, scopes: [String], audience: String? = nil, now: Double
  ) throws -> String {
    try assertion(
      key: key, claim: .init("scope", .string(scopes.joined(separator: " "))),
      audience: audience, now: now)
  }

  /// An assertion for an ID token: like `accessToken` but with `target_audience` and no `scope`.
  public static func idToken(
    key: ServiceAccountSigner, targetAudience: String, audience: String? = nil, now: Double
  ) throws -> String {
    try assertion(
      key: key, claim: .init("target_audience", .string(targetAudience)), audience: audience,
      now: now)
  }

  private static func assertion(
    key: ServiceAccountSigner, claim: JSONValue.Member, audience: String?, now: Double
  ) throws -> String {
    var header: [JSONValue.Member] = [.init("alg", .string("RS256")), .init("typ", .string("JWT"))]
    if !key.account.privateKeyID.isEmpty {
      header.append(.init("kid", .string(key.account.privateKeyID)))
    }
    let issuedAt = Int(now.rounded(.down))
    let claims: [JSONValue.Member] = [
      .init("iss", .string(key.account.clientEmail)),
      claim,
      .init("aud", .string(audience ?? key.account.tokenURI)),
      .init("iat", .int(issuedAt)),
      .init("exp", .int(issuedAt + lifetime)),
    ]
    let signingInput =
      Base64URL.encode(JSONValue.object(header).bytes) + "."
      + Base64URL.encode(JSONValue.object(claims).bytes)
    let signature = try key.signer.sign(Array(signingInput.utf8))
    return signingInput + "." + Base64URL.encode(signature)
  }
}

/// Reading JWTs we are handed (ID tokens) without verifying them: we only need their expiry.
public enum JWT {
  /// The decoded payload (claims) object, or nil when `token` is not a three-segment JWT with a
  /// base64url JSON-object payload.
  public static func claims(of token: String) -> [String: Any]? {
    let segments = token.split(separator: ".", omittingEmptySubsequences: false)
    guard segments.count == 3, let payload = Base64URL.decode(segments[1]) else { return nil }
    return JSONReading.object(payload)
  }

  /// The `exp` claim, seconds since the epoch.
  public static func expiry(of token: String) -> Double? {
    JSONReading.number(claims(of: token)?["exp"])
  }
}
