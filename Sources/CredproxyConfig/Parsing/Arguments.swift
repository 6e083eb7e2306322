// The values directives take: paths, durations, sizes, secrets, URLs credentials may be sent to,
// listen addresses, on/off, modes, counts and rates. Each reports its own error and returns nil.

extension ParseSession {
  mutating func path(_ t: Token) -> String? {
    let p = t.text
    if p.hasPrefix("~") {
      error(
        t,
        "\"~\" is not expanded in \"\(p)\"; expected an absolute path or one relative to the config file"
      )
      return nil
    }
    if p.hasPrefix("/") || baseDir.isEmpty || baseDir == "." { return p }
    return baseDir + "/" + p
  }

  mutating func duration(_ t: Token) -> Int? {
    do { return try Values.duration(t.text) } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func size(_ t: Token) -> UInt64? {
    do { return try Values.size(t.text) } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func secret(_ t: Token) -> SecretRef? {
    do {
      let ref = try Values.secret(t.text)
      switch ref {
      case .file(let p):
        guard let resolved = path(Token(text: p, quoted: t.quoted, line: t.line, column: t.column))
        else { return nil }
        return .file(resolved)
      case .literal:
        warn(t, "inline secret in the config file; prefer env:NAME or file:PATH")
        return ref
      case .env:
        return ref
      }
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  /// A token endpoint or API base URL: https, or http to a loopback host.
  mutating func secureURL(_ t: Token, what: String) -> String? {
    do {
      let u = try URLParts.parse(t.text)
      if !u.isSafeForCredentials {
        error(
          t,
          "\(what) must use https unless its host is loopback (127.0.0.0/8, ::1, localhost); expected https://…"
        )
        return nil
      }
      return t.text
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  /// A `secureURL` that paths are appended to (an API base, an OIDC issuer): no query or
  /// fragment, which would swallow the path.
  mutating func secureBaseURL(_ t: Token, what: String, example: String) -> String? {
    guard let url = secureURL(t, what: what) else { return nil }
    if url.contains("?") || url.contains("#") {
      error(t, "\(what) has a query or fragment; expected a base URL like \(example)")
      return nil
    }
    return url
  }

  /// A `listen` or `admin` address: an IP literal or `localhost`, with a port (0 allowed).
  mutating func bindAddress(_ t: Token, what: String) -> ListenAddress? {
    do {
      let hp = try Values.hostPort(t.text, portRequired: true, allowPortZero: true)
      if !hp.isIPv6 && hp.host != "localhost" && IPText.ipv4Canonical(hp.host.utf8) == nil {
        error(
          t,
          "\(what) address \"\(t.text)\" is not an IP address; expected e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080"
        )
        return nil
      }
      return ListenAddress(host: hp.host, port: hp.port!)
    } catch {
      self.error(t, error.message)
      return nil
    }
  }

  mutating func onOff(_ t: Token, _ what: String) -> Bool? {
    if t.isKeyword("on") { return true }
    if t.isKeyword("off") { return false }
    error(t, "invalid \(what) \"\(t.text)\"; expected on or off")
    return nil
  }

  mutating func mode(_ t: Token) -> PolicyMode? {
    if let m = PolicyMode(rawValue: t.keyword), !t.quoted { return m }
    error(t, "invalid mode \"\(t.text)\"; expected report or enforce")
    return nil
  }

  /// A positive whole number up to `max` (`max-concurrent`, rates, bursts).
  mutating func count(_ t: Token, _ what: String, example: String, max: Int = 1_000_000) -> Int? {
    let text = t.text
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text.count <= 9,
      let n = Int(text)
    else {
      error(t, "invalid \(what) \"\(text)\"; expected a whole number, at least 1 (e.g. \(example))")
      return nil
    }
    guard n >= 1 else {
      error(t, "\(what) \(text) is zero; expected at least 1 (e.g. \(example))")
      return nil
    }
    guard n <= max else {
      error(t, "\(what) \(text) is too large; expected at most \(max)")
      return nil
    }
    return n
  }

  /// `rate N/s [burst M]` or `rate N/m [burst M]`.
  mutating func rate(_ s: Statement) -> RateLimit? {
    let usage = Directive.usage("rate")
    guard s.tokens.count == 2 || s.tokens.count == 4 else {
      if s.tokens.count < 2 {
        error(s.head, "rate is missing its argument; expected \(usage)")
      } else if s.tokens.count == 3 {
        if s.tokens[2].isKeyword("burst") {
          error(s.tokens[2], "burst is missing its value; expected \(usage)")
        } else {
          error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
        }
      } else if !s.tokens[2].isKeyword("burst") {
        error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
      } else {
        error(s.tokens[4], "too many arguments to rate; expected \(usage)")
      }
      return nil
    }
    let t = s.tokens[1]
    let parts = t.text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let unit = RateLimit.Unit(rawValue: parts[1].lowercased()) else {
      error(t, "invalid rate \"\(t.text)\"; expected N/s or N/m (e.g. 10/s, 600/m)")
      return nil
    }
    guard
      let n = count(
        Token(text: String(parts[0]), quoted: false, line: t.line, column: t.column), "rate",
        example: "10/s")
    else { return nil }
    var burst: Int?
    if s.tokens.count == 4 {
      guard s.tokens[2].isKeyword("burst") else {
        error(s.tokens[2], "unexpected \"\(s.tokens[2].text)\" in rate; expected \(usage)")
        return nil
      }
      guard let b = count(s.tokens[3], "burst", example: "20") else { return nil }
      burst = b
    }
    return RateLimit(count: n, unit: unit, burst: burst)
  }

  static func validName(_ s: String) -> Bool {
    !s.isEmpty
      && s.utf8.allSatisfy { b in
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
          || b == 0x2D || b == 0x5F || b == 0x2E
      }
  }

  /// A client or credentials name: reported when invalid.
  mutating func validName(_ t: Token, _ kind: String) -> Bool {
    guard Self.validName(t.text) else {
      error(t, "invalid \(kind) name \"\(t.text)\"; expected letters, digits, -, _ and .")
      return false
    }
    return true
  }
}
