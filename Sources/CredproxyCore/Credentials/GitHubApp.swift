import CredproxyConfig
import Foundation
import GoogleAuth

/// A GitHub App installation, ready to mint: the spec with its private key loaded.
/// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app
struct GitHubAppInstallation: Sendable {
  let spec: GitHubAppSpec
  let signer: RSASigner
  /// The key as read, only to redact it from error text.
  let privateKeyPEM: String

  /// GitHub refuses an app JWT that lives longer than 10 minutes.
  static let jwtLifetime = 600
  /// GitHub advises backdating `iat` by 60 s against clock drift.
  static let backdate = 60
  /// Installation tokens are not used in their last 5 minutes.
  static let expiryMargin = 300.0

  /// The app JWT: RS256, `iss` the app ID (a JSON number when it is one), `iat` 60 s ago,
  /// `exp` 10 minutes after `iat`.
  func appJWT(now: Double) throws -> String {
    let iat = Int(now.rounded(.down)) - Self.backdate
    let iss: JSONValue = Int(spec.appID).map { .int($0) } ?? .string(spec.appID)
    let header: [JSONValue.Member] = [.init("alg", .string("RS256")), .init("typ", .string("JWT"))]
    let claims: [JSONValue.Member] = [
      .init("iat", .int(iat)), .init("exp", .int(iat + Self.jwtLifetime)), .init("iss", iss),
    ]
    let signingInput =
      Base64URL.encode(JSONValue.object(header).bytes) + "."
      + Base64URL.encode(JSONValue.object(claims).bytes)
    return signingInput + "." + Base64URL.encode(try signer.sign(Array(signingInput.utf8)))
  }

  var tokenURL: String { "\(spec.apiURL)/app/installations/\(spec.installationID)/access_tokens" }

  /// `POST /app/installations/{id}/access_tokens`, with the narrowing as the JSON body.
  func tokenRequest(appJWT: String) -> HTTPRequestSpec {
    var body: [JSONValue.Member] = []
    if !spec.repositories.isEmpty {
      body.append(.init("repositories", .array(spec.repositories.map { .string($0) })))
    }
    if !spec.permissions.isEmpty {
      body.append(
        .init("permissions", .object(spec.permissions.map { .init($0.name, .string($0.level)) })))
    }
    return HTTPRequestSpec(
      method: "POST", url: tokenURL,
      headers: [
        ("Accept", "application/vnd.github+json"), ("Authorization", "Bearer \(appJWT)"),
        ("X-GitHub-Api-Version", "2022-11-28"), ("User-Agent", "credproxy"),
        ("Content-Type", "application/json"),
      ],
      body: JSONValue.object(body).bytes)
  }

  /// `201 {"token": "ghs_…", "expires_at": "RFC 3339", …}`; cached until 5 minutes before
  /// `expires_at`. Errors carry GitHub's `message`, never the body.
  static func parseToken(status: Int, body: [UInt8], source: String) -> Result<
    MintedToken, TokenEndpointError
  > {
    let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    guard status == 201 || status == 200 else {
      return .failure(
        .classified(
          status: status, error: nil,
          errorDescription: (object?["message"] as? String).map { String($0.prefix(200)) },
          source: source))
    }
    guard let token = object?["token"] as? String, !token.isEmpty,
      let expiresText = object?["expires_at"] as? String,
      let expiresAt = RFC3339.parse(expiresText)
    else {
      return .failure(
        .classified(
          status: status, error: "invalid_response",
          errorDescription: "the answer has no token and expires_at", source: source))
    }
    return .success(
      MintedToken(value: token, expiresAt: expiresAt - expiryMargin, kind: .accessToken))
  }
}
