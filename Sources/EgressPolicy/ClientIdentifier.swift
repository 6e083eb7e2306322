import CredproxyConfig
import Foundation
import Wire

/// Who sent a request.
public enum Identification: Sendable, Equatable {
  /// A defined client, by name.
  case client(String)
  /// No clients are defined: every caller is anonymous, and routes without `allow` take it.
  case anonymous
  /// Clients are defined and the caller proved to be none of them. Answer 407 with
  /// `Proxy-Authenticate: Basic realm="credproxy"` (`ClientIdentifier.challenge`). The reason is
  /// one line, safe to show the caller and to log (never a secret).
  case rejected(String)
  /// A Bearer JWT that may be an OIDC client's token: its signature needs the issuer's keys
  /// (CredproxyCore fetches them), then `ClientIdentifier.matchOIDC` names the client. `only`:
  /// the token came as the password of Basic `NAME:JWT` (proxy URLs carry only Basic), and must
  /// identify that client.
  case verifyToken(String, only: String?)

  /// The client's name; nil when anonymous or rejected.
  public var clientName: String? {
    if case .client(let n) = self { return n }
    return nil
  }
}

/// Identifies callers from the config's `client` blocks. Immutable after construction; safe to
/// share between threads.
///
/// Order: a `Proxy-Authorization` header decides when present: `Basic base64(NAME:PASSWORD)`
/// (NAME must be a client's name) or `Bearer TOKEN` (a client's token); bad credentials are
/// rejected even if the address would match a `from`. Without the header, the client whose
/// `from` block contains the peer address (the longest prefix; the first in the file on a tie).
/// Secrets are compared in constant time. A Bearer JWT that is no client's static token (or the
/// password of Basic `NAME:JWT` for an `oidc` client NAME) is handed back as `.verifyToken`: its
/// signature is checked in CredproxyCore, and `matchOIDC` then names the client.
public struct ClientIdentifier: Sendable {
  /// The value of `Proxy-Authenticate` on a 407.
  public static let challenge = "Basic realm=\"credproxy\""

  private struct Entry: Sendable {
    var name: String
    var password: [UInt8]?
    var token: [UInt8]?
    var from: [CIDR]
  }

  private let entries: [Entry]
  private let byName: [String: Int]
  /// The clients identified by OIDC tokens, in file order.
  private let oidcRules: [(name: String, rule: OIDCClientRule)]
  /// Secrets that could not be read, or tokens two clients share: that way of identifying the
  /// client is disabled. Names sources, never values.
  public let problems: [String]

  /// Resolves the clients' secrets now (`SecretRef.resolve`).
  public init(
    clients: [ClientSpec], environment: [String: String] = ProcessInfo.processInfo.environment
  ) {
    var entries: [Entry] = []
    var problems: [String] = []
    for c in clients {
      var e = Entry(name: c.name, password: nil, token: nil, from: c.from)
      if let ref = c.password {
        do { e.password = Array(try ref.resolve(environment: environment).utf8) } catch {
          problems.append(
            "client \"\(c.name)\": password \(error.message); Basic authentication as \(c.name) is refused"
          )
        }
      }
      if let ref = c.token {
        do { e.token = Array(try ref.resolve(environment: environment).utf8) } catch {
          problems.append(
            "client \"\(c.name)\": token \(error.message); Bearer authentication as \(c.name) is refused"
          )
        }
      }
      entries.append(e)
    }
    // A token shared by two clients cannot tell them apart: disable it for both.
    for i in entries.indices {
      guard let t = entries[i].token else { continue }
      for j in entries.indices where j > i {
        if let u = entries[j].token, u == t {
          problems.append(
            "clients \"\(entries[i].name)\" and \"\(entries[j].name)\" have the same token; Bearer authentication with it is refused"
          )
          entries[j].token = nil
          entries[i].token = nil
        }
      }
    }
    var byName: [String: Int] = [:]
    for (i, e) in entries.enumerated() where byName[e.name] == nil { byName[e.name] = i }
    self.entries = entries
    self.byName = byName
    self.problems = problems
    oidcRules = clients.compactMap { c in c.oidc.map { (c.name, $0) } }
  }

  public init(
    config: ProxyConfig, environment: [String: String] = ProcessInfo.processInfo.environment
  ) {
    self.init(clients: config.clients, environment: environment)
  }

  /// False when no clients are defined (everyone is anonymous).
  public var clientsDefined: Bool { !entries.isEmpty }

  /// Every client password and token (for redacting them from untrusted text, never for display).
  public var secretValues: [String] {
    entries.flatMap { e in
      [e.password, e.token].compactMap { $0.map { String(decoding: $0, as: UTF8.self) } }
    }
  }

  /// - Parameters:
  ///   - proxyAuthorization: the `Proxy-Authorization` header value, if the request had one.
  ///   - peer: the address the connection comes from.
  public func identify(proxyAuthorization: String?, peer: IPAddress) -> Identification {
    guard !entries.isEmpty else { return .anonymous }
    if let header = proxyAuthorization {
      return identify(header: header)
    }
    var best: (index: Int, length: Int)?
    for (i, e) in entries.enumerated() {
      for block in e.from where block.contains(peer) {
        if best == nil || block.prefixLength > best!.length { best = (i, block.prefixLength) }
      }
    }
    if let best { return .client(entries[best.index].name) }
    return .rejected(
      "proxy authentication required: no Proxy-Authorization, and no client is identified by address \(peer.unmapped)"
    )
  }

  private func identify(header: String) -> Identification {
    let trimmed = HeaderNames.trimmingOWS(header[...])
    let space = trimmed.utf8.firstIndex(where: { $0 == 0x20 || $0 == 0x09 }) ?? trimmed.endIndex
    let scheme = trimmed[..<space].lowercased()
    let credentials = String(HeaderNames.trimmingOWS(trimmed[space...]))
    switch scheme {
    case "basic":
      guard
        let decoded = Base64.decode(
          credentials.utf8, alphabet: .standard, padding: .optional, canonicalBits: true),
        let colon = decoded.firstIndex(of: 0x3A)
      else {
        return .rejected("malformed Basic Proxy-Authorization; expected base64 of NAME:PASSWORD")
      }
      let user = decoded[..<colon]
      let password = Array(decoded[(colon + 1)...])
      let name = String(decoding: user, as: UTF8.self)
      let entry = byName[name].map { entries[$0] }
      // Compare even when there is nothing to compare with, so that an unknown name takes as
      // long as a wrong password.
      let stored = entry?.password
      // An empty stored password matches nothing.
      let ok = ConstantTime.equal(stored ?? password, password) && stored?.isEmpty == false
      if ok, let entry, Array(entry.name.utf8) == Array(user) { return .client(entry.name) }
      // `http://NAME:JWT@proxy`: an OIDC client's token in the form proxy URLs can carry.
      if oidcRules.contains(where: { $0.name == name }),
        password.count(where: { $0 == UInt8(ascii: ".") }) == 2
      {
        return .verifyToken(String(decoding: password, as: UTF8.self), only: name)
      }
      return .rejected("Basic proxy credentials for \(Self.quoted(name)) not accepted")
    case "bearer":
      let token = Array(credentials.utf8)
      guard !token.isEmpty else {
        return .rejected("malformed Bearer Proxy-Authorization; expected Bearer TOKEN")
      }
      var match: Int?
      for (i, e) in entries.enumerated() {
        // No early exit: every token is compared.
        if let t = e.token, ConstantTime.equal(t, token), !t.isEmpty { match = i }
      }
      if let match { return .client(entries[match].name) }
      if !oidcRules.isEmpty && token.count(where: { $0 == UInt8(ascii: ".") }) == 2 {
        return .verifyToken(credentials, only: nil)
      }
      return .rejected("Bearer proxy token not accepted")
    default:
      return .rejected(
        "unsupported Proxy-Authorization scheme \(Self.quoted(String(trimmed[..<space]))); expected Basic or Bearer"
      )
    }
  }

  static func quoted(_ s: String) -> String { Router.quoted(s, limit: 64) }

  // MARK: OIDC clients

  /// Clock skew allowed on `exp` and `nbf`.
  public static let oidcSkewSeconds = 60.0

  /// The issuers some client trusts (their keys are fetched on first use).
  public var oidcIssuers: Set<String> { Set(oidcRules.map(\.rule.issuer)) }

  public enum OIDCMatch: Sendable, Equatable {
    /// `claims`: the configured claims that matched (`repository=myorg/deploy`), for the audit log.
    case client(String, claims: [String])
    case rejected(String)
  }

  /// The client a verified token identifies (its signature was checked by the caller against
  /// `issuer`'s keys): the token must be current (`exp`, `nbf`, 60 s skew), for the client's
  /// audience, and carry every configured claim exactly. First matching client in file order.
  /// Reasons never quote the token or the configured values.
  /// `only`: consider that client alone (Basic `NAME:JWT`).
  public func matchOIDC(issuer: String, claims: [String: Any], now: Double, only: String? = nil)
    -> OIDCMatch
  {
    guard let exp = Self.number(claims["exp"]) else {
      return .rejected("OIDC proxy token has no exp claim")
    }
    guard now < exp + Self.oidcSkewSeconds else { return .rejected("OIDC proxy token expired") }
    if let nbf = claims["nbf"] {
      guard let nbf = Self.number(nbf), now >= nbf - Self.oidcSkewSeconds else {
        return .rejected("OIDC proxy token not yet valid (nbf)")
      }
    }
    let audiences: [String]
    switch claims["aud"] {
    case let one as String: audiences = [one]
    case let many as [Any]: audiences = many.compactMap { $0 as? String }
    default: audiences = []
    }
    var audienceMatched = false
    var mismatch: String?
    for (name, rule) in oidcRules where rule.issuer == issuer && (only == nil || only == name) {
      guard audiences.contains(rule.audience) else { continue }
      audienceMatched = true
      if let bad = rule.claims.first(where: { Self.text(claims[$0.key]) != $0.value }) {
        if mismatch == nil { mismatch = bad.key }
        continue
      }
      return .client(name, claims: rule.claims.map { "\($0.key)=\($0.value)" })
    }
    guard audienceMatched else {
      return .rejected(
        "OIDC proxy token's audience is not one a client of issuer \(issuer) accepts")
    }
    return .rejected(
      "OIDC proxy token from \(issuer) matches no client (claim \(Self.quoted(mismatch ?? "")) differs)"
    )
  }

  /// A JSON number that is not a string or a boolean (`exp`, `nbf`).
  public static func number(_ v: Any?) -> Double? {
    guard !(v is String), let n = v as? NSNumber, !isBoolean(n) else { return nil }
    return n.doubleValue
  }

  /// JSONSerialization's booleans are NSNumbers of ObjC type `c` (or `B`).
  private static func isBoolean(_ n: NSNumber) -> Bool {
    let type = String(cString: n.objCType)
    return type == "c" || type == "B"
  }

  /// A claim's value as configured values are written: strings as they are, booleans `true` /
  /// `false`, integers in decimal. Objects and arrays never match.
  private static func text(_ v: Any?) -> String? {
    switch v {
    case let s as String: return s
    case let n as NSNumber:
      if isBoolean(n) { return n.boolValue ? "true" : "false" }
      return n.doubleValue == n.doubleValue.rounded() && abs(n.doubleValue) < 1e15
        ? String(Int64(n.doubleValue)) : n.stringValue
    default: return nil
    }
  }
}
