import Foundation
import Wire

/// `type: "external_account"`: workload (or workforce) identity federation. A subject token from
/// outside Google (a CI runner's OIDC token, a Kubernetes service-account token, a SAML
/// assertion) is exchanged at Google's STS (RFC 8693) for an access token, which optionally pays
/// for IAM Credentials impersonation. Google's format (AIP-4117), as google-auth reads it.
public struct ExternalAccount: Sendable, Equatable {
  /// Where the subject token comes from (`credential_source`).
  public enum SubjectSource: Sendable, Equatable {
    case file(path: String, format: SubjectFormat)
    /// GET `url` with `headers` (in file order).
    case url(url: String, headers: [Header], format: SubjectFormat)
    /// `command` split like a POSIX shell would (no shell runs it); `timeoutMs` 5 s … 120 s.
    case executable(command: [String], timeoutMs: Int, outputFile: String?)
  }

  public struct Header: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
      self.name = name
      self.value = value
    }
  }

  /// `credential_source.format`: the whole content (trimmed), or one field of a JSON object.
  public enum SubjectFormat: Sendable, Equatable {
    case text
    case json(field: String)
  }

  public static let defaultTokenURL = "https://sts.googleapis.com/v1/token"
  public static let tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"
  public static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"
  public static let executableTimeoutDefaultMs = 30_000
  public static let executableTimeoutRangeMs = 5_000...120_000
  /// The variable that must be `1` before an executable source is run (as in Google's libraries).
  public static let allowExecutablesVariable = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"

  /// The STS audience: the workload (or workforce) identity pool provider.
  public var audience: String
  public var subjectTokenType: String
  public var tokenURL: String
  public var source: SubjectSource
  /// `service_account_impersonation_url` as written, and the email and IAM endpoint in it.
  public var impersonationURL: String?
  public var impersonationTarget: String?
  public var iamEndpoint: String?
  /// `service_account_impersonation.token_lifetime_seconds`.
  public var tokenLifetimeSeconds: Int?
  /// `workforce_pool_user_project`: sent to STS as `options={"userProject": …}`.
  public var workforcePoolUserProject: String?
  /// STS client authentication (HTTP Basic), when the file has them.
  public var clientID: String?
  public var clientSecret: String?
  public var quotaProjectID: String?

  public init(
    audience: String, subjectTokenType: String, tokenURL: String = ExternalAccount.defaultTokenURL,
    source: SubjectSource, impersonationURL: String? = nil, tokenLifetimeSeconds: Int? = nil,
    workforcePoolUserProject: String? = nil, clientID: String? = nil, clientSecret: String? = nil,
    quotaProjectID: String? = nil
  ) {
    self.audience = audience
    self.subjectTokenType = subjectTokenType
    self.tokenURL = tokenURL
    self.source = source
    self.impersonationURL = impersonationURL
    self.impersonationTarget = impersonationURL.flatMap(CredentialFile.impersonationTarget)
    self.iamEndpoint = impersonationURL.flatMap(CredentialFile.iamEndpoint(of:))
    self.tokenLifetimeSeconds = tokenLifetimeSeconds
    self.workforcePoolUserProject = workforcePoolUserProject
    self.clientID = clientID
    self.clientSecret = clientSecret
    self.quotaProjectID = quotaProjectID
  }

  /// `//iam.googleapis.com/locations/…/workforcePools/…`: a workforce pool (users, not workloads).
  public var isWorkforcePool: Bool {
    audience.range(
      of: #"//iam\.googleapis\.com/locations/[^/]+/workforcePools/"#, options: .regularExpression)
      != nil
  }

  /// The `options` form field: `{"userProject": …}` for a workforce pool without a client id
  /// (google-auth's rule: the client id already names the project).
  public var stsOptions: String? {
    guard let project = workforcePoolUserProject, clientID == nil else { return nil }
    return JSONValue.object([.init("userProject", .string(project))]).serialized
  }

  /// For messages: where the subject token comes from, never a header value.
  public var sourceDescription: String {
    switch source {
    case .file(let path, _): return "subject token file \(path)"
    case .url(let url, _, _): return "subject token url \(url)"
    case .executable(let command, _, _): return "executable \(command.first ?? "")"
    }
  }

  /// The variables google-auth gives an executable source (credproxy adds them to its small
  /// environment).
  public var executableEnvironment: [String: String] {
    var env = [
      "GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE": audience,
      "GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE": subjectTokenType,
      "GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE": "0",
      "GOOGLE_EXTERNAL_ACCOUNT_REVOKE": "0",
    ]
    if let target = impersonationTarget {
      env["GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL"] = target
      env["GOOGLE_EXTERNAL_ACCOUNT_ID"] = target
    }
    if case .executable(_, _, let output?) = source {
      env["GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE"] = output
    }
    return env
  }
}

extension ExternalAccount: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable
{
  public var description: String { "external account \(audience) (\(sourceDescription))" }
  public var debugDescription: String { description }
  public var customMirror: Mirror {
    Mirror(
      self,
      children: ["audience": audience, "source": sourceDescription, "clientSecret": "<redacted>"])
  }
}

// MARK: - Reading the file

extension ExternalAccount {
  /// Reads an `external_account` object; `fields` names the file in errors.
  static func parse(_ object: [String: Any], path: String) throws -> ExternalAccount {
    func fail(_ reason: String) -> CredentialFileError {
      CredentialFileError(path: path, reason: reason)
    }
    func string(_ o: [String: Any], _ name: String, _ prefix: String = "") throws -> String? {
      guard let v = o[name], !(v is NSNull) else { return nil }
      guard let s = v as? String else { throw fail("field \"\(prefix)\(name)\" must be a string") }
      return s.isEmpty ? nil : s
    }
    func required(_ name: String) throws -> String {
      guard let s = try string(object, name) else {
        throw fail("missing or empty field \"\(name)\"")
      }
      return s
    }
    let audience = try required("audience")
    let subjectTokenType = try required("subject_token_type")
    let tokenURL = try string(object, "token_url") ?? defaultTokenURL
    guard let cs = object["credential_source"] as? [String: Any] else {
      throw fail("missing \"credential_source\" object (with file, url or executable)")
    }
    if cs["environment_id"] != nil {
      throw fail(
        "credential_source.environment_id (AWS) is not supported; supported: file, url, executable")
    }
    if cs["certificate"] != nil {
      throw fail(
        "credential_source.certificate (X.509 workload identity) is not supported; supported: file, url, executable"
      )
    }
    let kinds = ["file", "url", "executable"].filter { cs[$0] != nil }
    guard kinds.count == 1 else {
      throw fail(
        kinds.isEmpty
          ? "credential_source has none of file, url, executable; expected exactly one"
          : "credential_source has \(kinds.joined(separator: " and ")); expected exactly one of file, url, executable"
      )
    }
    func format() throws -> SubjectFormat {
      guard let f = cs["format"] else { return .text }
      guard let fo = f as? [String: Any] else {
        throw fail("field \"credential_source.format\" must be an object")
      }
      switch try string(fo, "type", "credential_source.format.") ?? "text" {
      case "text": return .text
      case "json":
        guard let field = try string(fo, "subject_token_field_name", "credential_source.format.")
        else {
          throw fail("credential_source.format type json needs subject_token_field_name")
        }
        return .json(field: field)
      case let other:
        throw fail(
          "credential_source.format.type \"\(sanitizedForMessage(other, limit: 20))\" is not supported; expected text or json"
        )
      }
    }
    let source: SubjectSource
    switch kinds[0] {
    case "file":
      guard let p = try string(cs, "file", "credential_source.") else {
        throw fail("field \"credential_source.file\" must be a non-empty string")
      }
      source = .file(path: p, format: try format())
    case "url":
      guard let u = try string(cs, "url", "credential_source.") else {
        throw fail("field \"credential_source.url\" must be a non-empty string")
      }
      var headers: [Header] = []
      if let h = cs["headers"], !(h is NSNull) {
        guard let ho = h as? [String: Any] else {
          throw fail("field \"credential_source.headers\" must be an object of strings")
        }
        for name in ho.keys.sorted() {
          guard let value = ho[name] as? String else {
            throw fail("credential_source.headers.\(name) must be a string")
          }
          guard HeaderNames.isToken(name), !value.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 })
          else {
            throw fail("credential_source.headers has a name or value a header cannot carry")
          }
          headers.append(Header(name, value))
        }
      }
      source = .url(url: u, headers: headers, format: try format())
    default:
      guard let e = cs["executable"] as? [String: Any] else {
        throw fail("field \"credential_source.executable\" must be an object")
      }
      guard let line = try string(e, "command", "credential_source.executable.") else {
        throw fail("missing credential_source.executable.command")
      }
      guard let command = CommandLineSplitter.split(line), !command.isEmpty else {
        throw fail("credential_source.executable.command has an unterminated quote or escape")
      }
      var timeout = executableTimeoutDefaultMs
      if let t = e["timeout_millis"], !(t is NSNull) {
        guard let n = JSONReading.number(t), n == n.rounded(),
          executableTimeoutRangeMs.contains(Int(n))
        else {
          throw fail("credential_source.executable.timeout_millis must be between 5000 and 120000")
        }
        timeout = Int(n)
      }
      source = .executable(
        command: command, timeoutMs: timeout,
        outputFile: try string(e, "output_file", "credential_source.executable."))
    }
    let impersonationURL = try string(object, "service_account_impersonation_url")
    if let u = impersonationURL, CredentialFile.impersonationTarget(u) == nil {
      throw fail(
        "field \"service_account_impersonation_url\" does not end in \"/<email>:generateAccessToken\""
      )
    }
    var lifetime: Int?
    if let options = object["service_account_impersonation"] as? [String: Any],
      let t = options["token_lifetime_seconds"], !(t is NSNull)
    {
      guard let n = JSONReading.number(t), n == n.rounded(), (600...43_200).contains(Int(n)) else {
        throw fail(
          "service_account_impersonation.token_lifetime_seconds must be between 600 and 43200")
      }
      lifetime = Int(n)
    }
    var account = ExternalAccount(
      audience: audience, subjectTokenType: subjectTokenType, tokenURL: tokenURL, source: source,
      impersonationURL: impersonationURL, tokenLifetimeSeconds: lifetime,
      workforcePoolUserProject: try string(object, "workforce_pool_user_project"),
      clientID: try string(object, "client_id"), clientSecret: try string(object, "client_secret"),
      quotaProjectID: try string(object, "quota_project_id"))
    if account.workforcePoolUserProject != nil && !account.isWorkforcePool {
      throw fail("workforce_pool_user_project is set but the audience is not a workforce pool")
    }
    if account.clientSecret != nil && account.clientID == nil { account.clientSecret = nil }
    return account
  }
}

// MARK: - Subject tokens (pure)

/// Why a subject token could not be had: what was expected, never the content.
public struct SubjectTokenProblem: Error, Sendable, Equatable, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

public enum SubjectTokens {
  /// The subject token in a file's or URL's content.
  public static func extract(_ content: [UInt8], format: ExternalAccount.SubjectFormat)
    -> Result<String, SubjectTokenProblem>
  {
    let token: String
    switch format {
    case .text:
      token = String(decoding: content, as: UTF8.self).trimmingCharacters(
        in: .whitespacesAndNewlines)
    case .json(let field):
      guard let object = JSONReading.object(content) else {
        return .failure(SubjectTokenProblem("content is not a JSON object (format json)"))
      }
      guard let value = object[field] as? String else {
        return .failure(
          SubjectTokenProblem(
            "JSON has no string field \"\(sanitizedForMessage(field, limit: 60))\""))
      }
      token = value.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    guard !token.isEmpty else { return .failure(SubjectTokenProblem("the subject token is empty")) }
    guard token.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
      return .failure(
        SubjectTokenProblem("the subject token has characters outside printable ASCII"))
    }
    return .success(token)
  }

  /// An executable's JSON response (version 1): `success`, `token_type`, `id_token` or
  /// `saml_response`, `expiration_time`. Returns the token and its expiry (nil when not given).
  /// `requireExpiration`: a response read back from `output_file` counts only with an expiry.
  public static func executableResponse(
    _ bytes: [UInt8], now: Double, requireExpiration: Bool = false
  )
    -> Result<(token: String, expiresAt: Double?), SubjectTokenProblem>
  {
    func fail(_ why: String) -> Result<(token: String, expiresAt: Double?), SubjectTokenProblem> {
      .failure(SubjectTokenProblem(why))
    }
    guard let o = JSONReading.object(bytes) else { return fail("printed no JSON object") }
    guard let version = JSONReading.number(o["version"]) else {
      return fail("response has no version")
    }
    guard version <= 1 else {
      return fail("response version \(Int(version)) is not supported (1 is)")
    }
    guard let success = o["success"] as? Bool else { return fail("response has no success field") }
    guard success else { return fail("response says success: false") }
    var expiresAt: Double?
    if let e = JSONReading.number(o["expiration_time"]) {
      guard e > now else { return fail("response token has expired (expiration_time)") }
      expiresAt = e
    } else if requireExpiration {
      return fail("response has no expiration_time")
    }
    guard let type = o["token_type"] as? String else { return fail("response has no token_type") }
    let field: String
    switch type {
    case "urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token":
      field = "id_token"
    case "urn:ietf:params:oauth:token-type:saml2":
      field = "saml_response"
    default:
      return fail("response token_type is not jwt, id_token or saml2")
    }
    guard let token = o[field] as? String, !token.isEmpty else {
      return fail("response has no \(field)")
    }
    guard token.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
      return fail("response \(field) has characters outside printable ASCII")
    }
    return .success((token, expiresAt))
  }
}

/// Splits a command line the way `shlex.split` (POSIX mode) does, which is what google-auth runs
/// an executable source with: whitespace separates words, single quotes keep everything, double
/// quotes keep everything but `\"`, `\\`, `\$`, `` \` ``; a backslash outside quotes escapes the next
/// character. No expansion of any kind. nil for an unterminated quote or a trailing backslash.
public enum CommandLineSplitter {
  public static func split(_ line: String) -> [String]? {
    var words: [String] = []
    var current = ""
    var inWord = false
    var chars = Array(line.unicodeScalars)[...]
    while let c = chars.popFirst() {
      switch c {
      case " ", "\t", "\n", "\r":
        if inWord { words.append(current) }
        current = ""
        inWord = false
      case "'":
        inWord = true
        guard let end = chars.firstIndex(of: "'") else { return nil }
        current.unicodeScalars.append(contentsOf: chars[..<end])
        chars = chars[(end + 1)...]
      case "\"":
        inWord = true
        var closed = false
        while let d = chars.popFirst() {
          if d == "\"" {
            closed = true
            break
          }
          if d == "\\", let next = chars.first, "\"\\$`".unicodeScalars.contains(next) {
            current.unicodeScalars.append(next)
            chars = chars.dropFirst()
          } else {
            current.unicodeScalars.append(d)
          }
        }
        guard closed else { return nil }
      case "\\":
        guard let next = chars.popFirst() else { return nil }
        inWord = true
        current.unicodeScalars.append(next)
      default:
        inWord = true
        current.unicodeScalars.append(c)
      }
    }
    if inWord { words.append(current) }
    return words
  }
}

// MARK: - The STS exchange

extension TokenRequests {
  /// RFC 8693 at `token_url`, as google-auth's `sts.py` sends it: form-encoded `grant_type`,
  /// `audience`, `scope` (space-joined), `requested_token_type`, `subject_token`,
  /// `subject_token_type`, and `options` (URL-encoded JSON) when there are any; HTTP Basic when
  /// the file has a client id.
  public static func stsExchange(_ account: ExternalAccount, subjectToken: String, scopes: [String])
    -> HTTPRequestSpec
  {
    var pairs = [
      ("grant_type", ExternalAccount.tokenExchangeGrant), ("audience", account.audience),
    ]
    if !scopes.isEmpty { pairs.append(("scope", scopes.joined(separator: " "))) }
    pairs += [
      ("requested_token_type", ExternalAccount.accessTokenType), ("subject_token", subjectToken),
      ("subject_token_type", account.subjectTokenType),
    ]
    if let options = account.stsOptions {
      pairs.append(("options", FormURLEncoding.queryComponent(options)))
    }
    var request = HTTPRequestSpec(
      method: "POST", url: account.tokenURL, headers: [formContentType],
      body: Array(FormURLEncoding.encode(pairs).utf8))
    if let id = account.clientID {
      let credentials =
        FormURLEncoding.escape(id) + ":" + FormURLEncoding.escape(account.clientSecret ?? "")
      request.headers.append(
        ("Authorization", "Basic " + Data(credentials.utf8).base64EncodedString()))
    }
    return request
  }
}
