import Foundation
import GoogleAuth
import HTTP1
import Synchronization
import Wire

/// Placeholder credentials: what the metadata-server stub (`metadata-server ADDR:PORT`) hands to
/// SDKs that insist on holding a token. They are worth nothing anywhere: an access token is a
/// random opaque string, an ID token a well-formed JWT with a random signature. On a route with
/// Google `auth` the route's real token replaces them; anywhere else they are refused
/// (`placeholder_credential`).
enum Placeholder {
  /// Every placeholder access token starts with this.
  static let accessTokenPrefix = "credproxy-placeholder."
  /// The `kid` of every placeholder ID token.
  static let keyID = "credproxy-placeholder"
  /// The JOSE header of every placeholder ID token, base64url: the same for every token, so it is
  /// also how one is recognised in a header value.
  static let idTokenHeader = Base64URL.encode(
    Array(#"{"alg":"RS256","typ":"JWT","kid":"credproxy-placeholder"}"#.utf8))
  /// What the scan looks for in header values.
  static let markers: [[UInt8]] = [
    Array(accessTokenPrefix.utf8), Array((idTokenHeader + ".").utf8),
  ]
  /// How long a placeholder is said to live (`expires_in`, the ID token's `exp - iat`).
  static let lifetimeSeconds = 3600
  /// How long past its expiry a placeholder is still recognised (clocks, slow callers).
  static let graceSeconds = 600.0

  static func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
  }

  /// `credproxy-placeholder.` + 32 random bytes, base64url.
  static func accessToken() -> String {
    accessTokenPrefix + Base64URL.encode(randomBytes(32))
  }

  /// A syntactically valid RS256 JWT whose signature is random bytes: SDKs read `exp` from ID
  /// tokens without verifying them, and no verifier will ever accept it.
  static func idToken(audience: String, email: String, subject: String, now: Int) -> String {
    var payload = "{"
    for (name, value) in [
      ("aud", audience), ("azp", subject), ("email", email), ("iss", "https://accounts.google.com"),
      ("sub", subject),
    ] {
      payload += JSONText.quoted(name) + ":" + JSONText.quoted(value) + ","
    }
    payload += #""email_verified":true,"iat":\#(now),"exp":\#(now + lifetimeSeconds)}"#
    return idTokenHeader + "." + Base64URL.encode(Array(payload.utf8)) + "."
      + Base64URL.encode(randomBytes(256))
  }
}

/// Every placeholder handed out, until shortly after it expires. Process-wide, shared by the
/// metadata stub (loop 0) and the request path (every loop). Bounded: past `capacity` the oldest
/// entry is forgotten (a forgotten placeholder is still worth nothing; it is only no longer
/// refused by name).
final class PlaceholderRegistry: Sendable {
  static let shared = PlaceholderRegistry()
  static let capacity = 4096

  private struct State {
    var expiry: [String: Double] = [:]
    /// Insertion order, oldest first from `start`.
    var order: [String] = []
    var start = 0
  }

  private let state = Mutex(State())
  /// Entries held; read without the lock so the request path pays one atomic load while no
  /// placeholder was ever handed out.
  private let count = Atomic<Int>(0)
  let capacity: Int

  init(capacity: Int = PlaceholderRegistry.capacity) {
    self.capacity = capacity
  }

  var isEmpty: Bool { count.load(ordering: .relaxed) == 0 }

  func register(_ token: String, expiresAt: Double, now: Double = Date().timeIntervalSince1970) {
    state.withLock { s in
      Self.dropExpired(&s, now: now)
      while s.expiry.count >= capacity, s.start < s.order.count {
        s.expiry[s.order[s.start]] = nil
        s.start += 1
      }
      s.expiry[token] = expiresAt + Placeholder.graceSeconds
      s.order.append(token)
      Self.compact(&s)
      count.store(s.expiry.count, ordering: .relaxed)
    }
  }

  func contains(_ token: String, now: Double = Date().timeIntervalSince1970) -> Bool {
    state.withLock { s in
      guard let until = s.expiry[token] else { return false }
      return until > now
    }
  }

  /// Placeholders held now (for tests).
  var entryCount: Int { count.load(ordering: .relaxed) }

  private static func dropExpired(_ s: inout State, now: Double) {
    while s.start < s.order.count {
      let oldest = s.order[s.start]
      if let until = s.expiry[oldest], until > now { break }
      s.expiry[oldest] = nil
      s.start += 1
    }
  }

  private static func compact(_ s: inout State) {
    if s.start > 64 && s.start * 2 > s.order.count {
      s.order.removeFirst(s.start)
      s.start = 0
    }
  }
}

/// What the request path does about placeholders in a request's headers.
enum PlaceholderVerdict: Equatable {
  /// None found (or none was ever handed out): forward as it is.
  case clean
  /// Found only where the route's minted token replaces them: forward this head, which lacks
  /// the caller's fields that carried one.
  case forward(RequestHead)
  /// Found where nothing replaces it: refuse; `field` names the header, or says "request
  /// target" (never the value).
  case refuse(field: String)
}

enum PlaceholderScreen {
  /// The `field` of a refusal for a placeholder in the path or query.
  static let requestTarget = "request target"
  /// - Parameter injected: the header the route's minted Google token goes in, lowercase (nil: the route
  ///   mints nothing). A placeholder there, or in `Authorization`, is dropped (the caller's
  ///   `Authorization` must not travel next to an `X-Serverless-Authorization` token); in any other
  ///   field, or on a route that mints nothing, it is refused. `Proxy-Authorization` is the
  ///   caller's credential for this proxy and is not looked at (it is never forwarded).
  static func screen(
    _ head: RequestHead, injected: String?, registry: PlaceholderRegistry = .shared,
    now: Double = Date().timeIntervalSince1970
  ) -> PlaceholderVerdict {
    guard !registry.isEmpty else { return .clean }
    // The path and query are forwarded as sent (`?access_token=` is a Google API parameter), so a
    // placeholder there is refused; read percent-decoded too, as an upstream would.
    let target = head.pathAndQuery
    if carriesPlaceholder(target, registry: registry, now: now)
      || (target.utf8.contains(0x25)
        && carriesPlaceholder(
          String(decoding: PercentDecoding.decode(target.utf8), as: UTF8.self), registry: registry,
          now: now))
    {
      return .refuse(field: Self.requestTarget)
    }
    var drop: [Int] = []
    for (i, h) in head.headers.enumerated() {
      if HeaderPolicy.nameIs(h.name, "proxy-authorization") { continue }
      guard carriesPlaceholder(h.value, registry: registry, now: now) else { continue }
      guard let injected,
        HeaderPolicy.spellsSameField(h.name, injected)
          || HeaderPolicy.spellsSameField(h.name, "authorization")
      else { return .refuse(field: h.name) }
      drop.append(i)
    }
    guard !drop.isEmpty else { return .clean }
    var cleaned = head
    for i in drop.reversed() { cleaned.headers.remove(at: i) }
    return .forward(cleaned)
  }

  /// A marker (the access-token prefix or the ID token's fixed header) occurs in `value` and the
  /// token that starts there is one the registry handed out.
  static func carriesPlaceholder(
    _ value: String, registry: PlaceholderRegistry, now: Double
  ) -> Bool {
    let bytes = Array(value.utf8)
    for marker in Placeholder.markers where bytes.count >= marker.count {
      var i = 0
      while i <= bytes.count - marker.count {
        if bytes[i] == marker[0] && bytes[i..<(i + marker.count)].elementsEqual(marker) {
          var end = i + marker.count
          while end < bytes.count && isTokenByte(bytes[end]) { end += 1 }
          if let token = String(validating: bytes[i..<end], as: UTF8.self),
            registry.contains(token, now: now)
          {
            return true
          }
        }
        i += 1
      }
    }
    return false
  }

  /// base64url and the JWT's dots.
  private static func isTokenByte(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
      || b == 0x5F || b == 0x2E
  }
}

extension ProxyConnection {
  /// Screens `head` for placeholders on a route injecting `auth` (nil: a tunnel, which injects
  /// nothing). Returns the head to forward, or nil after answering `403 placeholder_credential`.
  func screenPlaceholders(
    _ head: RequestHead, injecting auth: AuthInjection?, record: LogContext, keepOpen: Bool
  ) -> RequestHead? {
    var injected: String? = nil
    if case .minted(_, _, let header) = auth { injected = header.lowercased() }
    switch PlaceholderScreen.screen(head, injected: injected) {
    case .clean:
      return head
    case .forward(let cleaned):
      return cleaned
    case .refuse(let field):
      var record = record
      record.deny(.placeholderCredential)
      respond(
        ErrorResponse(
          code: .placeholderCredential,
          message:
            "the \(field == PlaceholderScreen.requestTarget ? field : field + " header") carries a placeholder token from credproxy's metadata server; it is replaced by a real token only in Authorization (or the auth-header) of a route with Google auth, and is never forwarded"
        ),
        close: !keepOpen, log: record)
      return nil
    }
  }
}
