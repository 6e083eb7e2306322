import Foundation

/// One HTTP request for the lead's transport to perform. Headers are in order; names are as sent.
public struct HTTPRequestSpec: Sendable {
  public var method: String
  public var url: String
  public var headers: [(String, String)]
  public var body: [UInt8]

  public init(method: String, url: String, headers: [(String, String)], body: [UInt8] = []) {
    self.method = method
    self.url = url
    self.headers = headers
    self.body = body
  }

  /// The first header named `name` (case-insensitive).
  public func header(_ name: String) -> String? {
    headers.first { $0.0.lowercased() == name.lowercased() }?.1
  }

  public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

extension HTTPRequestSpec: CustomStringConvertible {
  /// Method, URL, header names and body size only: bodies and `Authorization` carry secrets.
  public var description: String {
    "\(method) \(url) [\(headers.map(\.0).joined(separator: ", "))] \(body.count) bytes"
  }
}

/// The GCE/Cloud Run/GKE metadata server.
public enum MetadataServer {
  public static let defaultHost = "metadata.google.internal"
  public static let defaultIP = "169.254.169.254"
  public static let flavorHeader = "Metadata-Flavor"
  public static let flavorValue = "Google"

  /// `http://$GCE_METADATA_HOST`, or `http://metadata.google.internal`.
  public static func baseURL(environment: [String: String]) -> String {
    if let host = environment["GCE_METADATA_HOST"], !host.isEmpty { return "http://\(host)" }
    return "http://\(defaultHost)"
  }
}

/// Request builders for every way credproxy mints a Google token. Pure: no I/O.
public enum TokenRequests {
  static let formContentType = ("Content-Type", "application/x-www-form-urlencoded")
  static let jsonContentType = ("Content-Type", "application/json")
  static let jwtBearerGrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

  // MARK: Token endpoint (OAuth 2.0)

  /// `POST token_uri` with `grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=<jwt>`.
  public static func jwtBearerGrant(tokenURI: String, assertion: String) -> HTTPRequestSpec {
    form(
      tokenURI,
      [("grant_type", jwtBearerGrantType), ("assertion", assertion)])
  }

  /// `POST token_uri` with `grant_type=refresh_token&client_id&client_secret&refresh_token[&scope]`.
  /// `scope` is sent (space-joined) only when `scopes` is not empty.
  public static func refreshTokenGrant(
    tokenURI: String, clientID: String, clientSecret: String, refreshToken: String,
    scopes: [String] = []
  ) -> HTTPRequestSpec {
    var pairs = [
      ("grant_type", "refresh_token"), ("client_id", clientID), ("client_secret", clientSecret),
      ("refresh_token", refreshToken),
    ]
    if !scopes.isEmpty { pairs.append(("scope", scopes.joined(separator: " "))) }
    return form(tokenURI, pairs)
  }

  /// The refresh-token grant for an `authorized_user` file.
  public static func refreshTokenGrant(_ user: AuthorizedUser, scopes: [String] = [])
    -> HTTPRequestSpec
  {
    refreshTokenGrant(
      tokenURI: user.tokenURI, clientID: user.clientID, clientSecret: user.clientSecret,
      refreshToken: user.refreshToken, scopes: scopes)
  }

  /// RFC 6749 §4.4: `grant_type=client_credentials[&scope]`, the client authenticating with HTTP
  /// Basic over its form-urlencoded id and secret (§2.3.1).
  public static func clientCredentialsGrant(
    tokenURI: String, clientID: String, clientSecret: String, scopes: [String] = []
  ) -> HTTPRequestSpec {
    var pairs = [("grant_type", "client_credentials")]
    if !scopes.isEmpty { pairs.append(("scope", scopes.joined(separator: " "))) }
    var request = form(tokenURI, pairs)
    let credentials =
      FormURLEncoding.escape(clientID) + ":" + FormURLEncoding.escape(clientSecret)
    request.headers.append(
      ("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()))
    return request
  }

  // MARK: Metadata server

  /// `GET {base}/computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b`
  /// (each scope percent-encoded, joined by literal commas; no query when `scopes` is empty).
  public static func metadataAccessToken(base: String, scopes: [String]) -> HTTPRequestSpec {
    var url = metadataURL(base, "instance/service-accounts/default/token")
    if !scopes.isEmpty {
      url += "?scopes=" + scopes.map { FormURLEncoding.queryComponent($0) }.joined(separator: ",")
    }
    return metadataGet(url)
  }

  /// `GET {base}/computeMetadata/v1/instance/service-accounts/default/identity?audience=<enc>&format=full`.
  public static func metadataIDToken(base: String, audience: String) -> HTTPRequestSpec {
    metadataGet(
      metadataURL(base, "instance/service-accounts/default/identity")
        + "?audience=\(FormURLEncoding.queryComponent(audience))&format=full")
  }

  /// `GET {base}/` with `Metadata-Flavor: Google`: the server is genuine when the response has
  /// the same header (`TokenResponses.hasMetadataFlavor`). google-auth allows 3 s.
  public static func metadataPing(base: String) -> HTTPRequestSpec {
    metadataGet(trimmedBase(base) + "/")
  }

  /// `GET {base}/computeMetadata/v1/instance/service-accounts/default/email`.
  public static func metadataEmail(base: String) -> HTTPRequestSpec {
    metadataGet(metadataURL(base, "instance/service-accounts/default/email"))
  }

  // MARK: IAM Credentials (impersonation)

  /// `POST {endpoint}/v1/projects/-/serviceAccounts/{email}:generateAccessToken` with
  /// `{"scope":[…],"lifetime":"3600s","delegates":[…]}` and `Authorization: Bearer <sourceToken>`.
  public static func iamGenerateAccessToken(
    endpoint: String = defaultIAMCredentialsEndpoint, targetEmail: String, scopes: [String],
    delegates: [String] = [], lifetimeSeconds: Int = 3600, sourceToken: String
  ) -> HTTPRequestSpec {
    let body = JSONValue.object([
      .init("scope", .array(scopes.map(JSONValue.string))),
      .init("lifetime", .string("\(lifetimeSeconds)s")),
      .init("delegates", .array(delegates.map { .string(delegateResource($0)) })),
    ])
    return iamPost(endpoint, targetEmail, "generateAccessToken", body, sourceToken)
  }

  /// `POST {endpoint}/v1/projects/-/serviceAccounts/{email}:generateIdToken` with
  /// `{"audience":…,"includeEmail":true,"delegates":[…]}`.
  public static func iamGenerateIDToken(
    endpoint: String = defaultIAMCredentialsEndpoint, targetEmail: String, audience: String,
    delegates: [String] = [], includeEmail: Bool = true, sourceToken: String
  ) -> HTTPRequestSpec {
    let body = JSONValue.object([
      .init("audience", .string(audience)),
      .init("includeEmail", .bool(includeEmail)),
      .init("delegates", .array(delegates.map { .string(delegateResource($0)) })),
    ])
    return iamPost(endpoint, targetEmail, "generateIdToken", body, sourceToken)
  }

  /// `projects/-/serviceAccounts/<email>`; a value already in resource form is kept.
  public static func delegateResource(_ delegate: String) -> String {
    delegate.hasPrefix("projects/") ? delegate : "projects/-/serviceAccounts/\(delegate)"
  }

  // MARK: Helpers

  private static func form(_ url: String, _ pairs: [(String, String)]) -> HTTPRequestSpec {
    HTTPRequestSpec(
      method: "POST", url: url, headers: [formContentType],
      body: Array(FormURLEncoding.encode(pairs).utf8))
  }

  private static func trimmedBase(_ base: String) -> String {
    var base = base
    while base.hasSuffix("/") { base.removeLast() }
    return base
  }

  private static func metadataURL(_ base: String, _ path: String) -> String {
    var base = trimmedBase(base)
    if base.hasSuffix("/computeMetadata/v1") { base.removeLast("/computeMetadata/v1".count) }
    return base + "/computeMetadata/v1/" + path
  }

  private static func metadataGet(_ url: String) -> HTTPRequestSpec {
    HTTPRequestSpec(
      method: "GET", url: url,
      headers: [(MetadataServer.flavorHeader, MetadataServer.flavorValue)])
  }

  private static func iamPost(
    _ endpoint: String, _ email: String, _ method: String, _ body: JSONValue, _ token: String
  ) -> HTTPRequestSpec {
    let encodedEmail = FormURLEncoding.queryComponent(email, keep: [UInt8(ascii: "@")])
    return HTTPRequestSpec(
      method: "POST",
      url: trimmedBase(endpoint) + "/v1/projects/-/serviceAccounts/\(encodedEmail):\(method)",
      headers: [jsonContentType, ("Authorization", "Bearer \(token)")],
      body: body.bytes)
  }
}
