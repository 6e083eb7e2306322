import XCTest

@testable import CredproxyConfig

/// Every directive of the language, once.
let fullExample = """
  # credproxy example
  listen 127.0.0.1:8080
  listen [::1]:0
  ca-file /etc/credproxy/extra-ca.pem
  connect-timeout 5s
  request-timeout 2m
  idle-timeout 90s
  header-timeout 250ms
  max-body 64m
  access-log /var/log/credproxy/access.log
  log-format json

  route api.example.com/v1 {        # line 13
    upstream https
    methods get Post
    auth bearer env:EXAMPLE_TOKEN
    connect-timeout 3s
    request-timeout 1h
    max-body 10k
  }

  route *.internal.example.com:8443 10.1.2.3 [2001:db8::1]:9000/api/ {   # line 22
    upstream http
    connect-to 10.0.0.5:8443
    auth header X-Api-Key file:/run/secrets/api-key
  }

  route legacy.example.com {
    auth basic alice env:LEGACY_PASSWORD
  }

  route storage.googleapis.com {
    auth OAuth2 scopes "https://www.googleapis.com/auth/devstorage.read_only, https://www.googleapis.com/auth/cloud-platform"
    credentials ci
  }

  route my-service-abc123-uc.a.run.app {
    auth OIDC audience origin
    credentials runner
    auth-header X-Serverless-Authorization
  }

  route open.example.com {
    auth none
  }

  route evil.example.com {
    deny
  }

  credentials ci {
    source key-file /etc/credproxy/ci-sa.json
    refresh-window 3m
  }

  credentials runner {
    source impersonate runner@proj.iam.gserviceaccount.com via ci delegates mid@proj.iam.gserviceaccount.com
    iam-endpoint https://iamcredentials.googleapis.com
  }

  credentials unused-cc {
    source client-credentials token-url http://127.0.0.1:9999/token client-id my-client client-secret env:CC_SECRET scopes a b,c
  }

  credentials meta {
    source metadata
  }

  credentials user {
    source refresh-token /home/me/adc.json
  }

  credentials default {
    source adc
  }
  """

func parse(_ text: String, google: Bool = true) throws -> ProxyConfig {
  try ConfigParser.parse(text: text, path: "proxy.conf")
}

/// The diagnostics of a config that must not load.
func diagnostics(
  _ text: String, google: Bool = false, file: StaticString = #filePath, line: UInt = #line
)
  -> [String]
{
  do {
    _ = try ConfigParser.parse(text: text, path: "proxy.conf")
    XCTFail("expected a ConfigError", file: file, line: line)
    return []
  } catch let e as ConfigError {
    return e.diagnostics.map(\.description)
  } catch {
    XCTFail("unexpected error \(error)", file: file, line: line)
    return []
  }
}

final class ParserTests: XCTestCase {
  func testFullExample() throws {
    let c = try parse(fullExample)
    XCTAssertEqual(
      c.listeners,
      [ListenAddress(host: "127.0.0.1", port: 8080), ListenAddress(host: "::1", port: 0)])
    XCTAssertEqual(c.listeners[1].description, "[::1]:0")
    XCTAssertEqual(c.caFile, "/etc/credproxy/extra-ca.pem")
    XCTAssertEqual(c.connectTimeoutMs, 5000)
    XCTAssertEqual(c.requestTimeoutMs, 120_000)
    XCTAssertEqual(c.idleTimeoutMs, 90_000)
    XCTAssertEqual(c.headerTimeoutMs, 250)
    XCTAssertEqual(c.maxBody, 64 << 20)
    XCTAssertEqual(c.accessLog, .file("/var/log/credproxy/access.log"))
    XCTAssertEqual(c.logFormat, .json)
    XCTAssertEqual(c.routes.count, 7)

    let r1 = c.routes[0]
    XCTAssertEqual(r1.name, "api.example.com/v1")
    XCTAssertEqual(r1.line, 13)
    XCTAssertEqual(
      r1.patterns, [RoutePattern(host: .exact("api.example.com"), port: nil, pathPrefix: "/v1")])
    XCTAssertEqual(r1.upstream, .https)
    XCTAssertEqual(r1.methods, ["GET", "POST"])
    XCTAssertEqual(r1.auth, .bearer(.env("EXAMPLE_TOKEN")))
    XCTAssertEqual(r1.connectTimeoutMs, 3000)
    XCTAssertEqual(r1.requestTimeoutMs, 3_600_000)
    XCTAssertEqual(r1.maxBody, 10 * 1024)

    let r2 = c.routes[1]
    XCTAssertEqual(r2.line, 22)
    XCTAssertEqual(
      r2.patterns,
      [
        RoutePattern(host: .suffix("internal.example.com"), port: 8443, pathPrefix: nil),
        RoutePattern(host: .exact("10.1.2.3"), port: nil, pathPrefix: nil),
        RoutePattern(host: .exact("2001:db8::1"), port: 9000, pathPrefix: "/api/"),
      ])
    XCTAssertEqual(r2.upstream, .http)
    XCTAssertEqual(r2.connectTo, ListenAddress(host: "10.0.0.5", port: 8443))
    XCTAssertEqual(r2.auth, .header(name: "X-Api-Key", value: .file("/run/secrets/api-key")))
    XCTAssertNil(r2.methods)

    XCTAssertEqual(c.routes[2].auth, .basic(user: "alice", password: .env("LEGACY_PASSWORD")))
    XCTAssertEqual(
      c.routes[3].auth,
      .oauth2(scopes: [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/devstorage.read_only",
      ]))
    XCTAssertEqual(c.routes[3].credentials, "ci")
    XCTAssertNil(c.routes[3].authHeader)
    XCTAssertEqual(c.routes[4].auth, .oidc(audience: .origin))
    XCTAssertEqual(c.routes[4].credentials, "runner")
    XCTAssertEqual(c.routes[4].authHeader, "X-Serverless-Authorization")
    XCTAssertEqual(c.routes[4].injectedHeaderName, "X-Serverless-Authorization")
    XCTAssertEqual(c.routes[5].auth, AuthSpec.none)
    XCTAssertEqual(c.routes[5].credentials, "default")
    XCTAssertTrue(c.routes[6].deny)

    XCTAssertEqual(
      c.credentials.map(\.name), ["ci", "runner", "unused-cc", "meta", "user", "default"])
    XCTAssertEqual(c.credentials[0].source, .keyFile(path: "/etc/credproxy/ci-sa.json"))
    XCTAssertEqual(c.credentials[0].refreshWindowMs, 180_000)
    XCTAssertEqual(
      c.credentials[1].source,
      .impersonate(
        email: "runner@proj.iam.gserviceaccount.com", via: "ci",
        delegates: ["mid@proj.iam.gserviceaccount.com"]))
    XCTAssertEqual(c.credentials[1].iamEndpoint, "https://iamcredentials.googleapis.com")
    XCTAssertEqual(c.credentials[1].refreshWindowMs, 300_000)
    XCTAssertEqual(
      c.credentials[2].source,
      .clientCredentials(
        tokenURL: "http://127.0.0.1:9999/token", clientID: "my-client",
        clientSecret: .env("CC_SECRET"), scopes: ["a", "b", "c"]))
    XCTAssertEqual(c.credentials[3].source, .metadata)
    XCTAssertEqual(c.credentials[4].source, .refreshToken(path: "/home/me/adc.json"))
    XCTAssertEqual(c.credentials[5].source, .adc)
    XCTAssertEqual(c.credentials[0].line, 51)

    // Warnings: the unused credentials blocks, the http upstream carrying a secret.
    let warnings = c.warnings.map(\.description)
    XCTAssertTrue(
      warnings.contains { $0.contains("credentials \"meta\" is not used") }, "\(warnings)")
    XCTAssertTrue(warnings.contains { $0.contains("plain http") }, "\(warnings)")
    XCTAssertFalse(warnings.contains { $0.contains("inline secret") })
  }

  func testDefaults() throws {
    let c = try parse("route example.com {\n}\n")
    XCTAssertEqual(c.listeners, [ListenAddress(host: "127.0.0.1", port: 8080)])
    XCTAssertEqual(c.routes[0].upstream, .https)
    XCTAssertEqual(c.routes[0].auth, AuthSpec.none)
    XCTAssertEqual(c.routes[0].credentials, "default")
    XCTAssertEqual(c.accessLog, .stderr)
    XCTAssertEqual(c.logFormat, .text)
    XCTAssertEqual(
      c.credential(named: "default"), CredentialSpec(name: "default", source: .adc, line: 0))
    XCTAssertNil(c.credential(named: "other"))
  }

  func testEmptyConfigWarnsNoRoutes() throws {
    let c = try parse("# nothing\n")
    XCTAssertEqual(c.routes.count, 0)
    XCTAssertTrue(c.warnings.contains { $0.message.contains("no routes") })
  }

  // MARK: Error forms, with exact positions

  func testUnknownDirective() {
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8080\nlisten-on 1.2.3.4:5\n"),
      [
        "proxy.conf:2:1: unknown directive \"listen-on\"; expected one of listen, ca-file, ca-cert, ca-key, connect-timeout, request-timeout, idle-timeout, header-timeout, body-timeout, body-min-rate, max-body, access-log, log-format, route, credentials, client, audit-log, log-queries, mode, admin, shutdown-timeout, limits-store, metadata-server at top level"
      ])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  upstrem https\n}\n"),
      [
        "proxy.conf:2:3: unknown directive \"upstrem\"; expected one of upstream, upstream-http, connect-to, methods, auth, deny, connect-timeout, request-timeout, max-body, credentials, auth-header, allow, rate, max-concurrent, tunnel, intercept, allow-private, mode in a route block"
      ])
    XCTAssertEqual(
      diagnostics("upstream http\n"),
      [
        "proxy.conf:1:1: upstream is only valid inside a route block; expected one of listen, ca-file, ca-cert, ca-key, connect-timeout, request-timeout, idle-timeout, header-timeout, body-timeout, body-min-rate, max-body, access-log, log-format, route, credentials, client, audit-log, log-queries, mode, admin, shutdown-timeout, limits-store, metadata-server at top level"
      ])
  }

  func testUnknownAuthType() {
    XCTAssertEqual(
      diagnostics("route a.example.com {\n    auth oauth token\n}\n"),
      [
        "proxy.conf:2:10: unknown auth type \"oauth\"; expected one of none, bearer, header, basic, OAuth2, OIDC, token"
      ])
  }

  /// OAuth2 and OIDC are always available (there is no build without them).
  func testGoogleAuthAlwaysAvailable() throws {
    let text =
      "route storage.googleapis.com {\n  auth OAuth2\n}\nroute x.run.app {\n  auth oidc audience url\n  auth-header X-Serverless-Authorization\n}\n"
    for google in [false, true] {
      let c = try parse(text, google: google)
      XCTAssertEqual(
        c.routes.map(\.auth.typeName), ["OAuth2", "OIDC"], "googleAuthAvailable: \(google)")
    }
    XCTAssertNoThrow(try parse("credentials default {\n  source metadata\n}\n", google: false))
  }

  func testBadDuration() {
    XCTAssertEqual(
      diagnostics("connect-timeout 30\n"),
      ["proxy.conf:1:17: duration \"30\" has no unit; expected a unit: ms, s, m or h (e.g. 30s)"])
    XCTAssertEqual(
      diagnostics("route a.b {\n  request-timeout 5d\n}\nidle-timeout soon\nheader-timeout 0s\n"),
      [
        "proxy.conf:2:19: invalid duration unit in \"5d\"; expected ms, s, m or h (e.g. 30s)",
        "proxy.conf:4:14: invalid duration \"soon\"; expected a number and a unit: ms, s, m or h (e.g. 30s, 250ms)",
        "proxy.conf:5:16: duration \"0s\" is zero; expected more than 0 (e.g. 30s)",
      ])
  }

  func testBadSize() {
    XCTAssertEqual(
      diagnostics("max-body 10x\n"),
      [
        "proxy.conf:1:10: invalid size unit in \"10x\"; expected a number of bytes, optionally with k, m or g (e.g. 64k, 10m)"
      ])
    XCTAssertEqual(
      diagnostics("max-body lots\n"),
      [
        "proxy.conf:1:10: invalid size \"lots\"; expected a number of bytes, optionally with k, m or g (e.g. 64k, 10m)"
      ])
  }

  func testSizes() throws {
    XCTAssertEqual(try parse("max-body 1234\n").maxBody, 1234)
    XCTAssertEqual(try parse("max-body 64K\n").maxBody, 65536)
    XCTAssertEqual(try parse("max-body 10m\n").maxBody, 10 << 20)
    XCTAssertEqual(try parse("max-body 1G\n").maxBody, 1 << 30)
    XCTAssertEqual(try parse("max-body 0\n").maxBody, 0)
  }

  func testBadPatterns() {
    XCTAssertEqual(
      diagnostics("route api.example.com *foo.example.com {\n}\n"),
      [
        "proxy.conf:1:23: invalid route pattern \"*foo.example.com\": a wildcard must be the whole leftmost label (*.example.com) or the whole host; expected HOST[:PORT][/PATH-PREFIX] with HOST exact, *.suffix or *"
      ])
    let d = diagnostics(
      "route a.example.com:99999 {\n}\nroute b.example.com/v1/../x {\n}\nroute 127.1 {\n}\nroute ::1 {\n}\nroute a.*.com {\n}\n"
    )
    XCTAssertEqual(d.count, 5, "\(d)")
    XCTAssertTrue(
      d[0].hasPrefix("proxy.conf:1:7: invalid route pattern \"a.example.com:99999\": invalid port"),
      d[0])
    XCTAssertTrue(
      d[1].hasPrefix(
        "proxy.conf:3:7: invalid route pattern \"b.example.com/v1/../x\": path prefix has"), d[1])
    XCTAssertTrue(
      d[2].hasPrefix(
        "proxy.conf:5:7: invalid route pattern \"127.1\": \"127.1\" is not a valid IPv4 address"),
      d[2])
    XCTAssertTrue(d[3].hasPrefix("proxy.conf:7:7: invalid route pattern \"::1\""), d[3])
    XCTAssertTrue(
      d[4].hasPrefix("proxy.conf:9:7: invalid route pattern \"a.*.com\": a wildcard must be"), d[4])
  }

  func testPatternNormalisation() throws {
    let c = try parse("route API.Example.COM.:443/V1/%7euser *.Example.com * [0:0::1]/ {\n}\n")
    XCTAssertEqual(
      c.routes[0].patterns,
      [
        RoutePattern(host: .exact("api.example.com"), port: 443, pathPrefix: "/V1/~user"),
        RoutePattern(host: .suffix("example.com"), port: nil, pathPrefix: nil),
        RoutePattern(host: .any, port: nil, pathPrefix: nil),
        RoutePattern(host: .exact("::1"), port: nil, pathPrefix: "/"),
      ])
    XCTAssertEqual(c.routes[0].patterns[0].description, "api.example.com:443/V1/~user")
    XCTAssertEqual(c.routes[0].patterns[3].description, "[::1]/")
  }

  func testMissingBraceAtEOF() {
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth none\n"),
      ["proxy.conf:1:21: route block is not closed at end of file; expected } on a line of its own"]
    )
  }

  func testMissingBraceBeforeNextRoute() {
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth none\nroute b.example.com {\n}\n"),
      [
        "proxy.conf:3:1: route block opened on line 1 is not closed; expected } before this route block"
      ])
  }

  func testStrayBrace() {
    XCTAssertEqual(
      diagnostics("route a.example.com {\n}\n  }\n"),
      ["proxy.conf:3:3: unexpected }: no block is open; expected a directive"])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  deny }\n}\n"),
      ["proxy.conf:2:8: } must be on a line of its own; expected } alone to close a block"])
  }

  func testBraceOnItsOwnLine() {
    XCTAssertEqual(
      diagnostics("route a.example.com\n{\n  deny\n}\n"),
      [
        "proxy.conf:2:1: { must end the line that opens the block; expected route … { on one line"
      ])
  }

  func testArgumentCounts() {
    XCTAssertEqual(
      diagnostics("listen\n"),
      [
        "proxy.conf:1:1: listen is missing its argument; expected listen ADDR:PORT [tls CERT-FILE KEY-FILE] (e.g. 127.0.0.1:8080 or [::1]:8080)"
      ])
    XCTAssertEqual(
      diagnostics("connect-timeout 1s 2s\n"),
      [
        "proxy.conf:1:20: too many arguments to connect-timeout; expected connect-timeout DURATION (e.g. 30s)"
      ])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth header X-Key\n  deny now\n}\n"),
      [
        "proxy.conf:2:8: auth header is missing an argument; expected auth header NAME SECRET (e.g. auth header X-Api-Key env:API_KEY)",
        "proxy.conf:3:8: too many arguments to deny; expected deny",
      ])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth bearer\n}\n"),
      [
        "proxy.conf:2:8: auth bearer is missing its argument; expected auth bearer SECRET (env:NAME, file:PATH or a value)"
      ])
  }

  func testDuplicates() {
    XCTAssertEqual(
      diagnostics(
        "log-format text\nlog-format json\nroute a.example.com {\n  auth none\n  AUTH none\n}\n"),
      [
        "proxy.conf:2:1: duplicate log-format (first set on line 1); expected at most one at top level",
        "proxy.conf:5:3: duplicate auth (first set on line 4); expected at most one per route",
      ])
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:80\nlisten 127.0.0.1:80\n"),
      [
        "proxy.conf:2:8: duplicate listen 127.0.0.1:80 (first on line 1); expected each address once"
      ])
  }

  func testCollectsAllErrors() {
    let d = diagnostics("lisen x\nmax-body big\nroute {\n  auth magic\n}\n}\n")
    XCTAssertEqual(d.count, 5, "\(d)")
    XCTAssertEqual(
      d.map { $0.split(separator: ":").prefix(3).joined(separator: ":") },
      [
        "proxy.conf:1:1", "proxy.conf:2:10", "proxy.conf:3:1", "proxy.conf:4:8", "proxy.conf:6:1",
      ])
  }

  func testKeywordsAreCaseInsensitive() throws {
    let c = try parse(
      "LISTEN 127.0.0.1:9000\nAccess-Log OFF\nLog-Format JSON\nRoute a.example.com {\n  UPSTREAM HTTP\n  Auth BEARER env:T\n}\nroute b.example.com {\n  auth oauth2 SCOPES x\n}\nroute c.run.app {\n  auth oidc AUDIENCE URL\n}\n"
    )
    XCTAssertEqual(c.listeners, [ListenAddress(host: "127.0.0.1", port: 9000)])
    XCTAssertEqual(c.accessLog, .off)
    XCTAssertEqual(c.logFormat, .json)
    XCTAssertEqual(c.routes[0].upstream, .http)
    XCTAssertEqual(c.routes[0].auth, .bearer(.env("T")))
    XCTAssertEqual(c.routes[1].auth, .oauth2(scopes: ["x"]))
    XCTAssertEqual(c.routes[2].auth, .oidc(audience: .url))
  }

  func testQuotedStrings() throws {
    let c = try parse(
      #"""
      access-log "/var/log/a log#1.txt"   # a comment with "quotes"
      route a.example.com {
        auth header X-Key "va#lue \"quoted\" back\\slash"
      }
      route b.example.com {
        auth OIDC audience "url"
      }
      """#)
    XCTAssertEqual(c.accessLog, .file("/var/log/a log#1.txt"))
    XCTAssertEqual(
      c.routes[0].auth, .header(name: "X-Key", value: .literal(#"va#lue "quoted" back\slash"#)))
    // A quoted "url" is a fixed audience, not the keyword.
    XCTAssertEqual(c.routes[1].auth, .oidc(audience: .fixed("url")))
    // The literal secret is warned about, at its position.
    XCTAssertTrue(
      c.warnings.map(\.description).contains(
        "proxy.conf:3:21: inline secret in the config file; prefer env:NAME or file:PATH"),
      "\(c.warnings)")
  }

  func testQuoteErrors() {
    XCTAssertEqual(
      diagnostics("access-log \"/tmp/x\n"),
      ["proxy.conf:1:12: unterminated quoted string; expected a closing \" on the same line"])
    XCTAssertEqual(
      diagnostics("access-log \"/tmp/\\x\"\n"),
      [
        "proxy.conf:1:18: unknown escape in a quoted string; expected \\\" or \\\\ (other characters need no escape)"
      ])
  }

  func testScopesNormalisation() throws {
    let forms = [
      #"auth OAuth2 scopes "https://b https://a""#,
      #"auth OAuth2 scopes https://b https://a https://b"#,
      #"auth OAuth2 scopes https://a,https://b"#,
      #"auth OAuth2 scope "https://b, https://a,""#,
      #"auth OAuth2 scopes https://b, "https://a""#,
    ]
    for form in forms {
      let c = try parse("route storage.googleapis.com {\n  \(form)\n}\n")
      XCTAssertEqual(c.routes[0].auth, .oauth2(scopes: ["https://a", "https://b"]), form)
    }
    let d = try parse("route storage.googleapis.com {\n  auth OAuth2\n}\n")
    XCTAssertEqual(
      d.routes[0].auth, .oauth2(scopes: ["https://www.googleapis.com/auth/cloud-platform"]))
    XCTAssertEqual(AuthSpec.normalizeScopes(["b a", "a,c"]), ["a", "b", "c"])
  }

  func testOAuth2OutsideGoogleAPIsWarns() throws {
    let c = try parse("route api.example.com {\n  auth OAuth2\n}\n")
    XCTAssertEqual(
      c.warnings.map(\.description),
      [
        "proxy.conf:2:8: auth OAuth2 on route #1 sends Google access tokens to api.example.com, which is not under googleapis.com"
      ])
  }

  func testOIDCAudiences() throws {
    let c = try parse(
      "route a.run.app {\n  auth OIDC\n}\nroute b.run.app {\n  auth OIDC audience https://custom\n}\n"
    )
    XCTAssertEqual(c.routes[0].auth, .oidc(audience: .origin))
    XCTAssertEqual(c.routes[1].auth, .oidc(audience: .fixed("https://custom")))
    XCTAssertEqual(
      OIDCAudience.origin.resolve(
        upstream: .https, host: "a.run.app", port: 443, pathAndQuery: "/x?y"),
      "https://a.run.app")
    XCTAssertEqual(
      OIDCAudience.origin.resolve(upstream: .https, host: "::1", port: 8443, pathAndQuery: "/x?y"),
      "https://[::1]:8443")
    XCTAssertEqual(
      OIDCAudience.url.resolve(
        upstream: .https, host: "a.run.app", port: 443, pathAndQuery: "/x/y?q=1"),
      "https://a.run.app/x/y")
  }

  func testCredentialErrors() {
    XCTAssertEqual(
      diagnostics("route a.run.app {\n  auth OIDC\n  credentials nope\n}\n", google: true),
      [
        "proxy.conf:3:15: undefined credentials \"nope\"; expected a credentials nope { … } block, or default"
      ])
    XCTAssertEqual(
      diagnostics(
        "route a.run.app {\n  auth OIDC\n  credentials me\n}\ncredentials me {\n  source refresh-token /x.json\n}\n",
        google: true),
      [
        "proxy.conf:3:15: auth OIDC uses credentials \"me\" (source refresh-token), and refresh tokens cannot mint ID tokens for an arbitrary audience; expected credentials with source adc, key-file, metadata or impersonate"
      ])
    let d = diagnostics(
      """
      credentials a {
        source impersonate a@p.iam.gserviceaccount.com via b
      }
      credentials b {
        source impersonate b@p.iam.gserviceaccount.com via a
        refresh-window 2h
      }
      credentials c {
        source client-credentials token-url http://auth.example.com/token client-id x client-secret env:S
      }
      credentials d {
        refresh-window 1m
        bogus 1
      }
      credentials e {
        source oauth
      }
      """, google: true)
    XCTAssertEqual(d.count, 7, "\(d)")
    XCTAssertTrue(
      d[0].hasPrefix("proxy.conf:2:54: credentials \"a\" impersonates via itself"), d[0])
    XCTAssertTrue(
      d[1].hasPrefix("proxy.conf:5:54: credentials \"b\" impersonates via itself"), d[1])
    XCTAssertTrue(d[2].hasPrefix("proxy.conf:6:18: refresh-window 2h is not shorter"), d[2])
    XCTAssertTrue(
      d[3].hasPrefix("proxy.conf:9:39: token-url must use https unless its host is loopback"), d[3])
    XCTAssertTrue(d[4].hasPrefix("proxy.conf:11:13: credentials \"d\" has no source"), d[4])
    XCTAssertTrue(d[5].hasPrefix("proxy.conf:13:3: unknown directive \"bogus\""), d[5])
    XCTAssertEqual(
      d[6],
      "proxy.conf:16:10: unknown credential source \"oauth\"; expected one of adc, key-file, metadata, impersonate, refresh-token, client-credentials, exec, github-app"
    )
  }

  func testAuthHeaderNeedsGoogleAuth() {
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth bearer env:T\n  auth-header X-Other\n}\n"),
      [
        "proxy.conf:3:15: auth-header only applies to auth OAuth2, OIDC, token or basic USER token, and this route has auth bearer; expected auth OAuth2, auth OIDC or auth token in this route"
      ])
  }

  func testReservedHeaderNames() {
    let d = diagnostics(
      "route a.example.com {\n  auth header Content-Length env:T\n}\nroute b.example.com {\n  auth header \"Bad Name\" env:T\n}\n"
    )
    XCTAssertEqual(d.count, 2, "\(d)")
    XCTAssertTrue(
      d[0].hasPrefix("proxy.conf:2:15: header Content-Length cannot carry a credential"), d[0])
    XCTAssertTrue(d[1].hasPrefix("proxy.conf:5:15: invalid header name \"Bad Name\""), d[1])
  }

  func testSecretReferences() throws {
    let c = try parse(
      "route a.b {\n  auth bearer env:TOKEN_1\n}\nroute c.d {\n  auth bearer file:tok\n}\n")
    XCTAssertEqual(c.routes[0].auth, .bearer(.env("TOKEN_1")))
    XCTAssertEqual(c.routes[1].auth, .bearer(.file("tok")))
    // Relative paths are relative to the config file's directory.
    let d = try ConfigParser.parse(
      text: "ca-file ca.pem\nroute a.b {\n  auth bearer file:secrets/tok\n}\n",
      path: "/etc/credproxy/proxy.conf")
    XCTAssertEqual(d.caFile, "/etc/credproxy/ca.pem")
    XCTAssertEqual(d.routes[0].auth, .bearer(.file("/etc/credproxy/secrets/tok")))
    XCTAssertEqual(
      diagnostics("route a.b {\n  auth bearer env:1BAD\n}\n"),
      [
        "proxy.conf:2:15: invalid environment variable name \"1BAD\"; expected letters, digits and _ (e.g. env:EXAMPLE_TOKEN)"
      ])
  }

  func testListenForms() throws {
    XCTAssertEqual(
      try parse("listen localhost:0\n").listeners, [ListenAddress(host: "localhost", port: 0)])
    let d = diagnostics(
      "listen 127.0.0.1\nlisten example.com:80\nlisten [::1:80\nlisten 1.2.3.4:70000\n")
    XCTAssertEqual(d.count, 4, "\(d)")
    XCTAssertTrue(d[0].hasPrefix("proxy.conf:1:8: missing port"), d[0])
    XCTAssertTrue(
      d[1].hasPrefix("proxy.conf:2:8: listen address \"example.com:80\" is not an IP address"), d[1]
    )
    XCTAssertTrue(d[2].hasPrefix("proxy.conf:3:8: missing ]"), d[2])
    XCTAssertTrue(d[3].hasPrefix("proxy.conf:4:8: invalid port \"70000\""), d[3])
    // A non-loopback listener without client authentication is an open proxy: refused
    // (see PolicyConfigTests for the rule in full).
    XCTAssertEqual(
      diagnostics("listen 0.0.0.0:8080\n"),
      [
        "proxy.conf:1:8: listening on 0.0.0.0:8080 without client authentication would make an open credential-injecting proxy; add a client block with password or token, or listen on 127.0.0.1"
      ])
  }

  func testShadowedRouteWarns() throws {
    let c = try parse("route *.example.com {\n}\nroute api.example.com/v1 {\n  deny\n}\n")
    XCTAssertTrue(
      c.warnings.map(\.description).contains(
        "proxy.conf:3:1: route #2 api.example.com/v1 never matches: route #1 matches first (first match wins)"
      ), "\(c.warnings)")
  }

  func testLoadConfig() throws {
    XCTAssertThrowsError(
      try loadConfig(path: "/nonexistent/proxy.conf")
    ) { e in
      let d = (e as? ConfigError)?.diagnostics ?? []
      XCTAssertEqual(d.count, 1)
      XCTAssertEqual(d.first?.line, 0)
      XCTAssertEqual(
        d.first?.description,
        "/nonexistent/proxy.conf:0:0: cannot read config file \"/nonexistent/proxy.conf\": no such file; expected a readable proxy.conf"
      )
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
      "cfg-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let file = dir.appendingPathComponent("proxy.conf").path
    try fullExample.write(toFile: file, atomically: true, encoding: .utf8)
    XCTAssertEqual(try loadConfig(path: file).routes.count, 7)
    XCTAssertEqual(try loadConfig(path: file).routes.count, 7)
  }
}
