import CSystem
import CredproxyConfig
import Foundation
import Glibc
import GoogleAuth
import HTTP1
import Wire

/// The answers of the metadata-server stub (`metadata-server ADDR:PORT`): the GCE metadata
/// endpoints Google's SDKs and gcloud read, with the real server's checks, handing out
/// placeholders only (`Placeholder`), each remembered in the registry. No I/O here.
struct MetadataStub {
  static let flavorHeader = "Metadata-Flavor"
  static let flavorValue = "Google"
  static let defaultEmail = "default@credproxy.invalid"
  static let defaultProject = "credproxy-placeholder"
  static let scopes = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
  ]

  struct Answer: Equatable {
    var status: Int
    var contentType: String
    var body: String
  }

  /// The service account email the SDKs are told (the config's credential's, when known).
  var email: String
  var projectID: String
  var numericProjectID: String
  var registry: PlaceholderRegistry = .shared

  /// Answers one request. `now`: Unix seconds.
  func answer(method: String, target: String, headers: [HeaderField], now: Double) -> Answer {
    // As the real server: a forwarded request is refused (SSRF through a proxy in front of it),
    // and a request without the flavor header is refused (a browser or a redirect cannot add it).
    if headers.contains(where: { HeaderPolicy.nameIs($0.name, "x-forwarded-for") }) {
      return text(403, "Request had an X-Forwarded-For header and was refused.\n")
    }
    let flavor = headers.first { HeaderPolicy.nameIs($0.name, "metadata-flavor") }?.value
    guard flavor == Self.flavorValue else {
      return text(403, "Missing required header: \"Metadata-Flavor: Google\"\n")
    }
    guard method == "GET" else { return text(405, "Only GET is served here.\n") }
    let (path, query) = Self.split(target)
    let v1 = "/computeMetadata/v1"
    switch path {
    case "/":
      return text(200, "computeMetadata/\n")
    case v1, v1 + "/":
      return text(200, "instance/\nproject/\nuniverse/\n")
    // Directories are listed (Node's gcp-metadata probes `…/instance` to decide it is on GCE).
    case v1 + "/instance", v1 + "/instance/":
      return text(200, "service-accounts/\n")
    case v1 + "/project", v1 + "/project/":
      return text(200, "numeric-project-id\nproject-id\n")
    case v1 + "/project/project-id":
      return text(200, projectID)
    case v1 + "/project/numeric-project-id":
      return text(200, numericProjectID)
    case v1 + "/universe/universe-domain":
      return text(200, "googleapis.com")
    case v1 + "/instance/service-accounts", v1 + "/instance/service-accounts/":
      return text(200, "default/\n\(email)/\n")
    default:
      break
    }
    let accounts = v1 + "/instance/service-accounts/"
    guard path.hasPrefix(accounts) else { return notFound() }
    let rest = path.dropFirst(accounts.count).split(
      separator: "/", omittingEmptySubsequences: false)
    guard rest.count == 1 || rest.count == 2, rest[0] == "default" || rest[0] == email else {
      return notFound()
    }
    let leaf = rest.count == 2 ? String(rest[1]) : ""
    switch leaf {
    case "":
      guard rest.count == 2 else { return notFound() }  // `…/default` without the slash
      if query["recursive"]?.lowercased() == "true" {
        let scopes = Self.scopes.map(JSONText.quoted).joined(separator: ",")
        return json(
          #"{"aliases":["default"],"email":\#(JSONText.quoted(email)),"scopes":[\#(scopes)]}"#)
      }
      return text(200, "aliases\nemail\nidentity\nscopes\ntoken\n")
    case "aliases":
      return text(200, "default\n")
    case "email":
      return text(200, email)
    case "scopes":
      return text(200, Self.scopes.joined(separator: "\n") + "\n")
    case "token":
      let token = Placeholder.accessToken()
      let expiresIn = Placeholder.lifetimeSeconds - 1
      registry.register(token, expiresAt: now + Double(expiresIn), now: now)
      return json(
        #"{"access_token":\#(JSONText.quoted(token)),"expires_in":\#(expiresIn),"token_type":"Bearer"}"#
      )
    case "identity":
      guard let audience = query["audience"], !audience.isEmpty else {
        return text(400, "non-empty audience parameter required\n")
      }
      let issued = Int(now)
      let token = Placeholder.idToken(
        audience: audience, email: email, subject: Self.subject, now: issued)
      registry.register(
        token, expiresAt: Double(issued + Placeholder.lifetimeSeconds), now: now)
      return text(200, token)
    default:
      return notFound()
    }
  }

  /// The `sub` of placeholder ID tokens (Google's are numeric strings).
  static let subject = "100000000000000000000"

  private func text(_ status: Int, _ body: String) -> Answer {
    Answer(status: status, contentType: "application/text", body: body)
  }

  private func json(_ body: String) -> Answer {
    Answer(status: 200, contentType: "application/json", body: body)
  }

  private func notFound() -> Answer { text(404, "Not Found\n") }

  /// Path and decoded query parameters (first value wins).
  static func split(_ target: String) -> (String, [String: String]) {
    let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
    var query: [String: String] = [:]
    if parts.count == 2 {
      for pair in parts[1].split(separator: "&") {
        let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let key = decode(kv[0])
        if query[key] == nil { query[key] = kv.count == 2 ? decode(kv[1]) : "" }
      }
    }
    return (parts.isEmpty ? "/" : String(parts[0]), query)
  }

  /// Form decoding: `+` is a space, `%XX` a byte; a malformed escape is kept as written.
  static func decode(_ s: Substring) -> String {
    var out: [UInt8] = []
    let b = Array(s.utf8)
    var i = 0
    func nibble(_ c: UInt8) -> UInt8? {
      switch c {
      case 0x30...0x39: return c - 0x30
      case 0x41...0x46: return c - 0x41 + 10
      case 0x61...0x66: return c - 0x61 + 10
      default: return nil
      }
    }
    while i < b.count {
      if b[i] == 0x25, i + 2 < b.count, let h = nibble(b[i + 1]), let l = nibble(b[i + 2]) {
        out.append(h << 4 | l)
        i += 3
      } else {
        out.append(b[i] == 0x2B ? 0x20 : b[i])
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The email and project SDKs are told: from the credential Google-auth routes use (`default`
  /// first), when its source names them; placeholders otherwise.
  static func identity(_ runtime: ProxyRuntime) -> (email: String, project: String) {
    var names = ["default"]
    for route in runtime.config.routes where route.auth.usesGoogleCredentials {
      names.append(route.credentials)
    }
    guard let credential = names.lazy.compactMap({ runtime.credentials[$0] }).first else {
      return (defaultEmail, defaultProject)
    }
    func of(_ source: MintingSource) -> (String?, String?) {
      switch source {
      case .serviceAccount(let signer):
        return (signer.account.clientEmail, signer.account.projectID)
      case .impersonate(let target, _, _, let via, _):
        return (target, of(via.source).1)
      case .authorizedUser(let user):
        return (nil, user.quotaProjectID)
      default:
        return (nil, nil)
      }
    }
    let (email, project) = of(credential.source)
    return (email ?? defaultEmail, project ?? defaultProject)
  }
}

/// The metadata-server stub's listener, served on loop 0 like the admin listener (one request
/// per connection, with `OneRequestServer`'s deadlines and connection cap).
final class MetadataListener {
  let state: ProxyState
  private var server: OneRequestServer?

  init(fd: Int32, state: ProxyState, loop: EventLoop) {
    self.state = state
    server = OneRequestServer(fd: fd, loop: loop) { [unowned self] request in
      let answer: MetadataStub.Answer
      switch request {
      case .failure(let e):
        answer = MetadataStub.Answer(
          status: e.status, contentType: "application/text", body: e.reason)
      case .success(let head):
        answer = stub.answer(
          method: head.method, target: head.pathAndQuery, headers: head.headers,
          now: Date().timeIntervalSince1970)
      }
      return madeResponse(
        status: answer.status, contentType: answer.contentType, body: answer.body,
        headers: [
          HeaderField(name: MetadataStub.flavorHeader, value: MetadataStub.flavorValue),
          HeaderField(name: "Server", value: "Metadata Server for VM (credproxy placeholder)"),
          HeaderField(name: "Cache-Control", value: "no-store"),
        ], close: true)
    }
  }

  var stub: MetadataStub {
    let (email, project) = MetadataStub.identity(state.current)
    return MetadataStub(email: email, projectID: project, numericProjectID: "0")
  }
}
