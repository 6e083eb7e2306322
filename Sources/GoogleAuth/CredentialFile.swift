import Foundation
import Wire

/// Google's default OAuth 2.0 token endpoint.
public let defaultTokenURI = "https://oauth2.googleapis.com/token"
/// The default universe domain of Google Cloud.
public let defaultUniverseDomain = "googleapis.com"
/// The default IAM Credentials API endpoint (impersonation).
public let defaultIAMCredentialsEndpoint = GoogleEndpoints.iamCredentials

/// A failure to load a credentials file. The message names the file and the field, never a value
/// from the file (so no key material can reach a log).
public struct CredentialFileError: Error, Sendable, Equatable, CustomStringConvertible {
  public let path: String
  public let reason: String

  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }

  public var description: String { "credentials file \(path): \(reason)" }
}

/// `type: "service_account"` — a service-account key file.
public struct ServiceAccountKey: Sendable, Equatable {
  public var clientEmail: String
  /// The PEM private key (PKCS#8 or PKCS#1).
  public var privateKeyPEM: String
  /// Becomes the JWT `kid`; may be empty (then no `kid` is sent).
  public var privateKeyID: String
  /// The file's `token_uri`, `https://oauth2.googleapis.com/token` when absent or empty.
  public var tokenURI: String
  public var projectID: String?
  /// `googleapis.com` when absent or empty.
  public var universeDomain: String

  public init(
    clientEmail: String, privateKeyPEM: String, privateKeyID: String,
    tokenURI: String = defaultTokenURI, projectID: String? = nil,
    universeDomain: String = defaultUniverseDomain
  ) {
    self.clientEmail = clientEmail
    self.privateKeyPEM = privateKeyPEM
    self.privateKeyID = privateKeyID
    self.tokenURI = tokenURI
    self.projectID = projectID
    self.universeDomain = universeDomain
  }
}

extension ServiceAccountKey: CustomStringConvertible, CustomDebugStringConvertible,
  CustomReflectable
{
  public var description: String {
    "service account \(clientEmail) (key id \(privateKeyID.isEmpty ? "none" : privateKeyID))"
  }
  public var debugDescription: String { description }
  public var customMirror: Mirror {
    Mirror(
      self,
      children: [
        "clientEmail": clientEmail, "privateKeyPEM": "<redacted>", "privateKeyID": privateKeyID,
        "tokenURI": tokenURI, "projectID": projectID as Any, "universeDomain": universeDomain,
      ])
  }
}

/// `type: "authorized_user"` — a user's refresh token, as `gcloud auth application-default login`
/// writes it. Cannot mint ID tokens for an arbitrary audience.
public struct AuthorizedUser: Sendable, Equatable {
  public var clientID: String
  public var clientSecret: String
  public var refreshToken: String
  public var tokenURI: String
  public var quotaProjectID: String?

  public init(
    clientID: String, clientSecret: String, refreshToken: String,
    tokenURI: String = defaultTokenURI, quotaProjectID: String? = nil
  ) {
    self.clientID = clientID
    self.clientSecret = clientSecret
    self.refreshToken = refreshToken
    self.tokenURI = tokenURI
    self.quotaProjectID = quotaProjectID
  }
}

extension AuthorizedUser: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  public var description: String { "authorized user (OAuth client \(clientID))" }
  public var debugDescription: String { description }
  public var customMirror: Mirror {
    Mirror(
      self,
      children: [
        "clientID": clientID, "clientSecret": "<redacted>", "refreshToken": "<redacted>",
        "tokenURI": tokenURI, "quotaProjectID": quotaProjectID as Any,
      ])
  }
}

/// `type: "impersonated_service_account"` — source credentials that call the IAM Credentials API
/// to mint tokens for `targetEmail`.
public struct ImpersonatedServiceAccount: Sendable, Equatable {
  /// The service account to impersonate, from `service_account_impersonation_url`.
  public var targetEmail: String
  /// Delegation chain, as written in the file (emails, or `projects/-/serviceAccounts/<email>`).
  public var delegates: [String]
  /// The credentials that obtain the source token (with cloud-platform scope).
  public var sourceCredentials: CredentialFile
  /// `service_account_impersonation_url` as written.
  public var impersonationURL: String
  /// The scheme and authority of `impersonationURL` (e.g. `https://iamcredentials.googleapis.com`),
  /// when it has the usual `…/v1/projects/-/serviceAccounts/…` shape.
  public var iamEndpoint: String?

  public init(
    targetEmail: String, delegates: [String], sourceCredentials: CredentialFile,
    impersonationURL: String, iamEndpoint: String?
  ) {
    self.targetEmail = targetEmail
    self.delegates = delegates
    self.sourceCredentials = sourceCredentials
    self.impersonationURL = impersonationURL
    self.iamEndpoint = iamEndpoint
  }
}

/// A parsed Google credentials JSON file (a key file, gcloud's ADC file, an impersonation config).
public indirect enum CredentialFile: Sendable, Equatable {
  case serviceAccount(ServiceAccountKey)
  case authorizedUser(AuthorizedUser)
  case impersonatedServiceAccount(ImpersonatedServiceAccount)
  /// Workload identity federation (STS exchange, then optionally impersonation).
  case externalAccount(ExternalAccount)

  /// The `type` values `parse` accepts.
  public static let supportedTypes = [
    "service_account", "authorized_user", "impersonated_service_account", "external_account",
  ]

  /// The file's `type` value.
  public var typeName: String {
    switch self {
    case .serviceAccount: "service_account"
    case .authorizedUser: "authorized_user"
    case .impersonatedServiceAccount: "impersonated_service_account"
    case .externalAccount: "external_account"
    }
  }

  /// False for `authorized_user` (a user refresh token cannot mint ID tokens for an arbitrary
  /// audience) and for an `external_account` without impersonation (STS grants access tokens
  /// only). Say so in a config error.
  public var canMintIDTokens: Bool {
    switch self {
    case .authorizedUser: false
    case .externalAccount(let account): account.impersonationURL != nil
    case .serviceAccount, .impersonatedServiceAccount: true
    }
  }

  /// Parses a credentials file. `path` is used only in error messages.
  public static func parse(data: Data, path: String) throws -> CredentialFile {
    guard let object = JSONReading.object(data) else {
      throw CredentialFileError(path: path, reason: "not a JSON object")
    }
    return try parse(object: object, path: path, fieldPrefix: "")
  }

  private static func parse(object: [String: Any], path: String, fieldPrefix: String) throws
    -> CredentialFile
  {
    let fields = Fields(object: object, path: path, prefix: fieldPrefix)
    let supported = supportedTypes.joined(separator: ", ")
    guard let type = try fields.optionalString("type"), !type.isEmpty else {
      throw fields.error("missing \"\(fieldPrefix)type\" field; supported types: \(supported)")
    }
    switch type {
    case "service_account":
      let pem = try fields.requiredString("private_key")
      guard pem.contains("-----BEGIN"), pem.contains("PRIVATE KEY-----") else {
        throw fields.error("field \"\(fieldPrefix)private_key\" is not a PEM private key")
      }
      return .serviceAccount(
        ServiceAccountKey(
          clientEmail: try fields.requiredString("client_email"),
          privateKeyPEM: pem,
          privateKeyID: try fields.optionalString("private_key_id") ?? "",
          tokenURI: try fields.nonEmptyString("token_uri") ?? defaultTokenURI,
          projectID: try fields.nonEmptyString("project_id"),
          universeDomain: try fields.nonEmptyString("universe_domain") ?? defaultUniverseDomain))
    case "authorized_user":
      return .authorizedUser(
        AuthorizedUser(
          clientID: try fields.requiredString("client_id"),
          clientSecret: try fields.requiredString("client_secret"),
          refreshToken: try fields.requiredString("refresh_token"),
          tokenURI: try fields.nonEmptyString("token_uri") ?? defaultTokenURI,
          quotaProjectID: try fields.nonEmptyString("quota_project_id")))
    case "impersonated_service_account":
      let url = try fields.requiredString("service_account_impersonation_url")
      guard let target = impersonationTarget(url) else {
        throw fields.error(
          "field \"\(fieldPrefix)service_account_impersonation_url\" does not end in "
            + "\"/<email>:generateAccessToken\"")
      }
      let delegates = try fields.optionalStringArray("delegates") ?? []
      guard let source = object["source_credentials"] else {
        throw fields.error("missing \"\(fieldPrefix)source_credentials\" field")
      }
      guard let sourceObject = source as? [String: Any] else {
        throw fields.error("field \"\(fieldPrefix)source_credentials\" must be a JSON object")
      }
      let sourceCredentials = try parse(
        object: sourceObject, path: path, fieldPrefix: fieldPrefix + "source_credentials.")
      return .impersonatedServiceAccount(
        ImpersonatedServiceAccount(
          targetEmail: target, delegates: delegates, sourceCredentials: sourceCredentials,
          impersonationURL: url, iamEndpoint: iamEndpoint(of: url)))
    case "external_account":
      return .externalAccount(try ExternalAccount.parse(object, path: path))
    case "external_account_authorized_user":
      throw fields.error(
        "credential type \"\(type)\" (workload/workforce identity federation) is not supported; "
          + "supported types: \(supported)")
    default:
      throw fields.error(
        "unsupported credential type \"\(sanitizedForMessage(type, limit: 40))\"; "
          + "supported types: \(supported)")
    }
  }

  /// The email in `…/serviceAccounts/<email>:generateAccessToken` (the same rule as
  /// google-auth-library-python: between the last `/` and `:generateAccessToken`).
  static func impersonationTarget(_ url: String) -> String? {
    guard let end = url.range(of: ":generateAccessToken", options: .backwards),
      let slash = url[..<end.lowerBound].lastIndex(of: "/")
    else { return nil }
    let email = String(url[url.index(after: slash)..<end.lowerBound])
    return email.isEmpty ? nil : email
  }

  static func iamEndpoint(of url: String) -> String? {
    guard let range = url.range(of: "/v1/projects/") else { return nil }
    let base = String(url[..<range.lowerBound])
    return base.hasPrefix("https://") || base.hasPrefix("http://") ? base : nil
  }
}

/// Field access with error messages that name the field and never its value.
private struct Fields {
  let object: [String: Any]
  let path: String
  let prefix: String

  func error(_ reason: String) -> CredentialFileError {
    CredentialFileError(path: path, reason: reason)
  }

  func optionalString(_ name: String) throws -> String? {
    guard let value = object[name], !(value is NSNull) else { return nil }
    guard let text = value as? String else {
      throw error("field \"\(prefix)\(name)\" must be a string")
    }
    return text
  }

  func nonEmptyString(_ name: String) throws -> String? {
    guard let text = try optionalString(name), !text.isEmpty else { return nil }
    return text
  }

  func requiredString(_ name: String) throws -> String {
    guard let text = try nonEmptyString(name) else {
      throw error("missing or empty field \"\(prefix)\(name)\"")
    }
    return text
  }

  func optionalStringArray(_ name: String) throws -> [String]? {
    guard let value = object[name], !(value is NSNull) else { return nil }
    guard let items = value as? [Any], let strings = items as? [String] else {
      throw error("field \"\(prefix)\(name)\" must be a list of strings")
    }
    return strings
  }
}
