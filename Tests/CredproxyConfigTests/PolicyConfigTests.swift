import HTTP1
import XCTest

@testable import CredproxyConfig

/// Clients, per-route policy, tunnels, audit, admin and the listener rules.
let policyExample = """
  listen 0.0.0.0:8443 tls certs/proxy.pem certs/proxy.key
  listen 127.0.0.1:8080
  audit-log /var/log/credproxy/audit.log
  log-queries on
  mode report
  admin 127.0.0.1:9090
  shutdown-timeout 45s

  client alice {
    password env:ALICE_PW
    from 10.0.0.0/8
    from 127.0.0.1 ::1/128
    max-concurrent 8
  }
  client ci {
    token file:ci.token
  }
  client office {
    from 192.168.0.0/16 fd00::/8
  }

  route api.example.com {         # line 22
    allow alice ci
    rate 10/s burst 20
    max-concurrent 4
    mode enforce
    auth bearer env:API_TOKEN
  }
  route git.example.com:22 {      # line 29
    tunnel
    allow office
  }
  route db.internal {             # line 33
    allow-private
    rate 600/m
  }
  """

final class PolicyConfigTests: XCTestCase {
  func testPolicyExample() throws {
    let c = try ConfigParser.parse(text: policyExample, path: "/etc/credproxy/proxy.conf")
    XCTAssertEqual(
      c.listeners,
      [
        ListenAddress(
          host: "0.0.0.0", port: 8443,
          tls: ListenerTLS(
            certFile: "/etc/credproxy/certs/proxy.pem", keyFile: "/etc/credproxy/certs/proxy.key")),
        ListenAddress(host: "127.0.0.1", port: 8080),
      ])
    XCTAssertEqual(c.listeners[0].description, "0.0.0.0:8443")
    XCTAssertEqual(c.auditLog, .file("/var/log/credproxy/audit.log"))
    XCTAssertTrue(c.logQueries)
    XCTAssertEqual(c.mode, .report)
    XCTAssertEqual(
      c.admin,
      AdminConfig(address: ListenAddress(host: "127.0.0.1", port: 9090), token: nil, line: 6))
    XCTAssertEqual(c.shutdownTimeoutMs, 45_000)

    XCTAssertEqual(c.clients.map(\.name), ["alice", "ci", "office"])
    let alice = c.clients[0]
    XCTAssertEqual(alice.password, .env("ALICE_PW"))
    XCTAssertNil(alice.token)
    XCTAssertEqual(alice.from.map(\.description), ["10.0.0.0/8", "127.0.0.1/32", "::1/128"])
    XCTAssertEqual(alice.maxConcurrent, 8)
    XCTAssertEqual(alice.line, 9)
    XCTAssertTrue(alice.authenticates)
    XCTAssertEqual(
      alice.identificationSummary, "password env:ALICE_PW, from 10.0.0.0/8 127.0.0.1/32 ::1/128")
    XCTAssertEqual(c.clients[1].token, .file("/etc/credproxy/ci.token"))
    XCTAssertFalse(c.clients[2].authenticates)
    XCTAssertEqual(c.client(named: "ci")?.line, 15)
    XCTAssertTrue(c.requiresClientAuthentication)

    let api = c.routes[0]
    XCTAssertEqual(api.line, 22)
    XCTAssertEqual(api.allow, ["alice", "ci"])
    XCTAssertEqual(api.rate, RateLimit(count: 10, unit: .second, burst: 20))
    XCTAssertEqual(api.rate?.description, "10/s burst 20")
    XCTAssertEqual(api.maxConcurrent, 4)
    XCTAssertEqual(api.mode, .enforce)
    XCTAssertEqual(c.effectiveMode(api), .enforce)
    XCTAssertFalse(api.tunnel)
    XCTAssertTrue(api.allows(client: "ci"))
    XCTAssertFalse(api.allows(client: "office"))
    XCTAssertFalse(api.allows(client: nil))

    let git = c.routes[1]
    XCTAssertTrue(git.tunnel)
    XCTAssertEqual(git.auth, AuthSpec.none)
    XCTAssertEqual(c.effectiveMode(git), .report)

    let db = c.routes[2]
    XCTAssertTrue(db.allowPrivate)
    XCTAssertNil(db.allow)
    XCTAssertTrue(db.allows(client: "office"))
    XCTAssertTrue(db.allows(client: nil))
    XCTAssertEqual(db.rate, RateLimit(count: 600, unit: .minute))
    XCTAssertEqual(db.rate?.burst, 600)
    XCTAssertEqual(db.rate?.description, "600/m")
    XCTAssertEqual(db.rate?.perSecond, 10)

    // The TLS listener draws no warning; the loopback one neither.
    XCTAssertFalse(c.warnings.contains { $0.message.contains("in clear") }, "\(c.warnings)")
  }

  func testDefaults() throws {
    let c = try parse("route a.example.com {\n}\n")
    XCTAssertEqual(c.clients, [])
    XCTAssertEqual(c.auditLog, .off)
    XCTAssertEqual(c.mode, .enforce)
    XCTAssertNil(c.admin)
    XCTAssertEqual(c.shutdownTimeoutMs, 30_000)
    XCTAssertFalse(c.logQueries)
    XCTAssertNil(c.listeners[0].tls)
    let r = c.routes[0]
    XCTAssertNil(r.allow)
    XCTAssertNil(r.rate)
    XCTAssertNil(r.maxConcurrent)
    XCTAssertFalse(r.tunnel)
    XCTAssertFalse(r.allowPrivate)
    XCTAssertNil(r.mode)
    XCTAssertFalse(c.requiresClientAuthentication)
  }

  func testTopLevelForms() throws {
    let c = try parse(
      "audit-log STDERR\nlog-queries OFF\nmode Enforce\nadmin [::1]:0\nshutdown-timeout 500ms\n")
    XCTAssertEqual(c.auditLog, .stderr)
    XCTAssertFalse(c.logQueries)
    XCTAssertEqual(c.mode, .enforce)
    XCTAssertEqual(c.admin?.address, ListenAddress(host: "::1", port: 0))
    XCTAssertEqual(c.shutdownTimeoutMs, 500)
    XCTAssertEqual(try parse("audit-log off\n").auditLog, .off)
    let t = try parse("admin 10.0.0.1:9090 token env:ADMIN_TOKEN\n")
    XCTAssertEqual(t.admin?.token, .env("ADMIN_TOKEN"))
    XCTAssertTrue(
      t.warnings.map(\.description).contains(
        "proxy.conf:1:7: admin on 10.0.0.1:9090 is plain http: its token would cross the network in clear; prefer a loopback address"
      ), "\(t.warnings)")
  }

  // MARK: Listener rules

  func testOpenProxyIsRefused() throws {
    let open =
      "listening on 0.0.0.0:8080 without client authentication would make an open credential-injecting proxy; add a client block with password or token, or listen on 127.0.0.1"
    XCTAssertEqual(diagnostics("listen 0.0.0.0:8080\n"), ["proxy.conf:1:8: \(open)"])
    // `from`-only clients are not authentication: addresses are not secrets.
    XCTAssertEqual(
      diagnostics("client office {\n  from 10.0.0.0/8\n}\nlisten  0.0.0.0:8080\n"),
      ["proxy.conf:4:9: \(open)"])
    XCTAssertEqual(
      diagnostics("listen [::]:8080\n"),
      [
        "proxy.conf:1:8: listening on [::]:8080 without client authentication would make an open credential-injecting proxy; add a client block with password or token, or listen on 127.0.0.1"
      ])
    // Loopback needs nothing.
    XCTAssertNoThrow(try parse("listen 127.0.0.2:8080\nlisten [::1]:8080\nlisten localhost:0\n"))

    // With a password client it loads, and warns that passwords would travel in clear.
    let c = try parse("listen 0.0.0.0:8080\nclient a {\n  password env:A\n}\nroute a.b {\n}\n")
    XCTAssertEqual(
      c.warnings.map(\.description),
      [
        "proxy.conf:1:8: listening on 0.0.0.0:8080 without tls: passwords would cross the network in clear; add `tls CERT KEY` to the listen line"
      ])
    let t = try parse(
      "listen 0.0.0.0:8080 TLS /c.pem /k.pem\nclient a {\n  token env:A\n}\nroute a.b {\n}\n")
    XCTAssertEqual(t.warnings, [])
    XCTAssertEqual(t.listeners[0].tls, ListenerTLS(certFile: "/c.pem", keyFile: "/k.pem"))
  }

  func testListenTLSErrors() {
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8443 tls /c.pem\n"),
      [
        "proxy.conf:1:23: listen 127.0.0.1:8443 tls is missing an argument; expected listen ADDR:PORT tls CERT-FILE KEY-FILE"
      ])
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8443 ssl /c.pem /k.pem\n"),
      [
        "proxy.conf:1:23: unexpected \"ssl\" after the address; expected listen ADDR:PORT [tls CERT-FILE KEY-FILE] (e.g. 127.0.0.1:8080 or [::1]:8080)"
      ])
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8443 tls /c.pem /k.pem extra\n"),
      [
        "proxy.conf:1:41: too many arguments to listen 127.0.0.1:8443 tls; expected listen ADDR:PORT tls CERT-FILE KEY-FILE"
      ])
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8443 tls ~/c.pem /k.pem\n"),
      [
        "proxy.conf:1:27: \"~\" is not expanded in \"~/c.pem\"; expected an absolute path or one relative to the config file"
      ])
    // The same address twice is a duplicate even if one has tls.
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:80\nlisten 127.0.0.1:80 tls /c /k\n"),
      [
        "proxy.conf:2:8: duplicate listen 127.0.0.1:80 (first on line 1); expected each address once"
      ])
  }

  // MARK: Clients

  func testClientErrors() {
    XCTAssertEqual(
      diagnostics(
        """
        client a {
          max-concurrent 2
        }
        client b {
          password env:B
          password env:B2
          token
          from 10.1.2.3/8 300.1.1.1 ::1/129
          from
          source adc
          nonsense 1
        }
        client b {
          token env:X
        }
        client {
        }
        client c d {
          from 10.0.0.0/8
        }
        client bad/name {
        }
        client e
        """),
      [
        "proxy.conf:1:8: client \"a\" has no way to be identified; expected password SECRET, token SECRET, from CIDR… or oidc issuer URL audience A in its block",
        "proxy.conf:6:3: duplicate password (first set on line 5); expected at most one per client",
        "proxy.conf:7:3: token is missing its argument; expected token SECRET (env:NAME, file:PATH or a value)",
        "proxy.conf:8:8: \"10.1.2.3/8\" has bits set after the /8 prefix; expected 10.0.0.0/8",
        "proxy.conf:8:19: \"300.1.1.1\" is not an address block; expected an address or ADDRESS/PREFIX (e.g. 10.0.0.0/8, 127.0.0.1, ::1/128)",
        "proxy.conf:8:29: invalid prefix length \"129\" in \"::1/129\"; expected 0–128 for an IPv6 address",
        "proxy.conf:9:3: from is missing its addresses; expected from CIDR… (e.g. from 10.0.0.0/8 127.0.0.1 ::1/128)",
        "proxy.conf:10:3: source is only valid inside a credentials block; expected one of password, token, oidc, from, max-concurrent in a client block",
        "proxy.conf:11:3: unknown directive \"nonsense\"; expected one of password, token, oidc, from, max-concurrent in a client block",
        "proxy.conf:13:8: duplicate client block \"b\" (first on line 4); expected each name once",
        "proxy.conf:16:1: client is missing its name; expected client NAME {",
        "proxy.conf:18:10: too many arguments to client; expected client NAME {",
        "proxy.conf:21:8: invalid client name \"bad/name\"; expected letters, digits, -, _ and .",
        "proxy.conf:23:8: client opens a block; expected client NAME { with { at the end of the line",
      ])
    XCTAssertEqual(
      diagnostics(
        "client a {\n  token env:T\n  max-concurrent 0\n}\nclient b {\n  token env:T\n  max-concurrent many\n}\n"
      ),
      [
        "proxy.conf:3:18: max-concurrent 0 is zero; expected at least 1 (e.g. 8)",
        "proxy.conf:6:9: client \"b\" has the same token as client \"a\" (env:T); expected a token of its own for each client",
        "proxy.conf:7:18: invalid max-concurrent \"many\"; expected a whole number, at least 1 (e.g. 8)",
      ])
    // Inline secrets are warned about, like route secrets.
    let c = try? parse("client a {\n  password hunter2\n}\nroute a.b {\n}\n")
    XCTAssertEqual(
      c?.warnings.map(\.description),
      ["proxy.conf:2:12: inline secret in the config file; prefer env:NAME or file:PATH"])
  }

  func testDirectivesInTheWrongPlace() {
    XCTAssertEqual(
      diagnostics(
        "max-concurrent 4\nallow a\nroute a.example.com {\n  password env:P\n  admin 127.0.0.1:1\n}\n"
      ),
      [
        "proxy.conf:1:1: max-concurrent is only valid inside a route block or a client block; expected one of listen, ca-file, ca-cert, ca-key, connect-timeout, request-timeout, idle-timeout, header-timeout, body-timeout, body-min-rate, max-body, access-log, log-format, route, credentials, client, audit-log, log-queries, mode, admin, shutdown-timeout, limits-store, metadata-server at top level",
        "proxy.conf:2:1: allow is only valid inside a route block; expected one of listen, ca-file, ca-cert, ca-key, connect-timeout, request-timeout, idle-timeout, header-timeout, body-timeout, body-min-rate, max-body, access-log, log-format, route, credentials, client, audit-log, log-queries, mode, admin, shutdown-timeout, limits-store, metadata-server at top level",
        "proxy.conf:4:3: password is only valid inside a client block; expected one of upstream, upstream-http, connect-to, methods, auth, deny, connect-timeout, request-timeout, max-body, credentials, auth-header, allow, rate, max-concurrent, tunnel, intercept, allow-private, mode in a route block",
        "proxy.conf:5:3: admin is only valid at top level; expected one of upstream, upstream-http, connect-to, methods, auth, deny, connect-timeout, request-timeout, max-body, credentials, auth-header, allow, rate, max-concurrent, tunnel, intercept, allow-private, mode in a route block",
      ])
    XCTAssertEqual(
      diagnostics("client a {\n  mode report\n  token env:T\n}\n"),
      [
        "proxy.conf:2:3: mode is only valid at top level or inside a route block; expected one of password, token, oidc, from, max-concurrent in a client block"
      ])
    // A client block left open is reported at the next block.
    XCTAssertEqual(
      diagnostics("client a {\n  token env:T\nroute b.example.com {\n}\n"),
      [
        "proxy.conf:3:1: client block opened on line 1 is not closed; expected } before this route block"
      ])
  }

  // MARK: Route policy

  func testRouteDirectiveErrors() {
    XCTAssertEqual(
      diagnostics(
        """
        client a {
          token env:T
        }
        route one.example.com {
          allow a nobody "b c"
          rate 10
        }
        route two.example.com {
          allow
          rate 10/h
          max-concurrent -1
          mode strict
          tunnel now
          allow-private yes
        }
        route three.example.com {
          rate 0/s
        }
        route four.example.com {
          rate 5/s burst
        }
        route five.example.com {
          rate 5/s burst 0
        }
        route six.example.com {
          rate 5/s limit 3
        }
        route seven.example.com {
          rate 5/s burst 3 more
        }
        route eight.example.com {
          rate 99999999/s
        }
        """),
      [
        "proxy.conf:5:11: undefined client \"nobody\"; expected a client nobody { … } block",
        "proxy.conf:5:18: invalid client name \"b c\"; expected letters, digits, -, _ and .",
        "proxy.conf:6:8: invalid rate \"10\"; expected N/s or N/m (e.g. 10/s, 600/m)",
        "proxy.conf:9:3: allow is missing its clients; expected allow CLIENT… (names of client blocks)",
        "proxy.conf:10:8: invalid rate \"10/h\"; expected N/s or N/m (e.g. 10/s, 600/m)",
        "proxy.conf:11:18: invalid max-concurrent \"-1\"; expected a whole number, at least 1 (e.g. 8)",
        "proxy.conf:12:8: invalid mode \"strict\"; expected report or enforce",
        "proxy.conf:13:10: too many arguments to tunnel; expected tunnel",
        "proxy.conf:14:17: too many arguments to allow-private; expected allow-private",
        "proxy.conf:17:8: rate 0 is zero; expected at least 1 (e.g. 10/s)",
        "proxy.conf:20:12: burst is missing its value; expected rate N/s or N/m [burst M] (e.g. rate 10/s burst 20)",
        "proxy.conf:23:18: burst 0 is zero; expected at least 1 (e.g. 20)",
        "proxy.conf:26:12: unexpected \"limit\" in rate; expected rate N/s or N/m [burst M] (e.g. rate 10/s burst 20)",
        "proxy.conf:29:20: too many arguments to rate; expected rate N/s or N/m [burst M] (e.g. rate 10/s burst 20)",
        "proxy.conf:32:8: rate 99999999 is too large; expected at most 1000000",
      ])
  }

  func testTunnelRules() throws {
    XCTAssertEqual(
      diagnostics(
        """
        route a.example.com {
          tunnel
          auth bearer env:T
        }
        route b.example.com/v1 {
          tunnel
        }
        """),
      [
        "proxy.conf:2:3: tunnel cannot be combined with auth bearer: a CONNECT tunnel carries the caller's own end-to-end TLS, which the proxy cannot add a credential to; expected auth none on a tunnel route (give the tunnel a route of its own)",
        "proxy.conf:6:3: tunnel on route #2 never applies: CONNECT has no path and every pattern of the route has a path prefix; expected a pattern HOST[:PORT] without a path",
      ])
    XCTAssertEqual(
      diagnostics("route s.googleapis.com {\n  auth OAuth2\n  tunnel\n}\n", google: true).first,
      "proxy.conf:3:3: tunnel cannot be combined with auth OAuth2: a CONNECT tunnel carries the caller's own end-to-end TLS, which the proxy cannot add a credential to; expected auth none on a tunnel route (give the tunnel a route of its own)"
    )
    let c = try parse(
      "route a.example.com:443 b.example.com/x {\n  tunnel\n  auth none\n}\nroute c.example.com {\n  deny\n  tunnel\n}\n"
    )
    XCTAssertEqual(
      c.warnings.map(\.description),
      [
        "proxy.conf:2:3: tunnel on route #1 does not apply to b.example.com/x: CONNECT has no path, so only patterns without a path prefix match a tunnel",
        "proxy.conf:7:3: route #2 denies every request, so its tunnel is never used",
      ])
  }

  func testTopLevelErrors() {
    XCTAssertEqual(
      diagnostics(
        """
        audit-log
        log-queries maybe
        mode audit
        shutdown-timeout 0s
        admin 0.0.0.0:9090
        """),
      [
        "proxy.conf:1:1: audit-log is missing its argument; expected audit-log stderr|off|PATH",
        "proxy.conf:2:13: invalid log-queries \"maybe\"; expected on or off",
        "proxy.conf:3:6: invalid mode \"audit\"; expected report or enforce",
        "proxy.conf:4:18: duration \"0s\" is zero; expected more than 0 (e.g. 30s)",
        "proxy.conf:5:7: admin on a non-loopback address needs a token; expected admin 0.0.0.0:9090 token SECRET, or a loopback address such as 127.0.0.1:9090",
      ])
    XCTAssertEqual(
      diagnostics(
        "admin 127.0.0.1:9090 secret x\nmode report\nmode enforce\n"),
      [
        "proxy.conf:1:22: unexpected \"secret\" after the address; expected admin ADDR:PORT [token SECRET] (e.g. admin 127.0.0.1:9090)",
        "proxy.conf:3:1: duplicate mode (first set on line 2); expected at most one at top level",
      ])
    XCTAssertEqual(
      diagnostics("admin admin.example.com:9090\n"),
      [
        "proxy.conf:1:7: admin address \"admin.example.com:9090\" is not an IP address; expected e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080"
      ])
    XCTAssertEqual(
      diagnostics("admin 127.0.0.1:9090 token\n"),
      [
        "proxy.conf:1:22: admin 127.0.0.1:9090 token is missing its argument; expected admin ADDR:PORT token SECRET"
      ])
    XCTAssertEqual(
      diagnostics("listen 127.0.0.1:8080\nadmin 127.0.0.1:8080\n"),
      [
        "proxy.conf:2:7: admin address 127.0.0.1:8080 is also a listen address; expected a port of its own for admin"
      ])
    XCTAssertEqual(
      diagnostics(
        "listen 0.0.0.0:8080 tls /c /k\nclient a {\n  token env:T\n}\nadmin 127.0.0.1:8080\n"),
      [
        "proxy.conf:5:7: admin address 127.0.0.1:8080 is also a listen address; expected a port of its own for admin"
      ])
  }

  // MARK: Router

  func router(_ text: String) throws -> Router { Router(routes: try parse(text).routes) }

  func tunnel(_ r: Router, _ host: String, _ port: Int, client: String?? = .none) -> String {
    let d: RoutingDecision
    if case .some(let c) = client {
      d = r.decideTunnel(host: host, port: port, client: c)
    } else {
      d = r.decideTunnel(host: host, port: port)
    }
    switch d {
    case .forward(let m): return "forward #\(m.number)"
    case .refuse(let code, _, _): return "\(code.status) \(code)"
    }
  }

  func testDecideTunnel() throws {
    let r = try router(
      """
      client a {
        token env:A
      }
      route git.example.com/repo {
        auth none
      }
      route git.example.com:22 {
        tunnel
      }
      route *.example.com:443 {
        tunnel
        allow a
      }
      route api.example.com {
      }
      route evil.example.com {
        deny
      }
      route [::1]:8443 10.0.0.1 {
        tunnel
      }
      """)
    // Path patterns never match a tunnel: git.example.com:22 reaches route #2.
    XCTAssertEqual(tunnel(r, "git.example.com", 22), "forward #2")
    XCTAssertEqual(tunnel(r, "GIT.example.com.", 22), "forward #2")
    XCTAssertEqual(tunnel(r, "git.example.com", 443), "forward #3")
    XCTAssertEqual(tunnel(r, "x.example.com", 443), "forward #3")
    XCTAssertEqual(tunnel(r, "x.example.com", 443, client: .some("a")), "forward #3")
    XCTAssertEqual(tunnel(r, "x.example.com", 443, client: .some(nil)), "403 client_not_allowed")
    XCTAssertEqual(tunnel(r, "api.example.com", 80), "403 tunnel_denied")
    XCTAssertEqual(tunnel(r, "evil.example.com", 80), "403 denied")
    XCTAssertEqual(tunnel(r, "nowhere.org", 443), "403 tunnel_denied")
    XCTAssertEqual(tunnel(r, "::1", 8443), "forward #6")
    XCTAssertEqual(tunnel(r, "[::1]", 8443), "forward #6")
    XCTAssertEqual(tunnel(r, "::1", 8444), "403 tunnel_denied")
    XCTAssertEqual(tunnel(r, "167772161", 5432), "forward #6")
    guard
      case .refuse(_, let reason, let match) = r.decideTunnel(
        host: "api.example.com", port: 8080)
    else { return XCTFail() }
    XCTAssertEqual(
      reason,
      "CONNECT to \"api.example.com:8080\" is not allowed: route #4 api.example.com (line 14) has neither tunnel nor intercept"
    )
    XCTAssertEqual(match?.number, 4)
    guard case .refuse(_, let r2, nil) = r.decideTunnel(host: "::2", port: 443) else {
      return XCTFail()
    }
    XCTAssertEqual(
      r2, "no intercept or tunnel route for \"[::2]:443\": credproxy is deny-by-default")
  }

  func testDecideWithClient() throws {
    let r = try router(
      """
      client alice {
        token env:A
      }
      client bob {
        token env:B
      }
      route api.example.com {
        allow alice
        methods GET
      }
      route open.example.com {
      }
      route gone.example.com {
        allow alice
        deny
      }
      """)
    func outcome(_ host: String, _ client: String?, method: String = "GET") -> String {
      switch r.decide(method: method, host: host, explicitPort: nil, path: "/", client: client) {
      case .forward(let m): return "forward #\(m.number)"
      case .refuse(let code, _, _): return "\(code.status) \(code)"
      }
    }
    XCTAssertEqual(outcome("api.example.com", "alice"), "forward #1")
    XCTAssertEqual(outcome("api.example.com", "bob"), "403 client_not_allowed")
    XCTAssertEqual(outcome("api.example.com", nil), "403 client_not_allowed")
    // The allow list comes before methods (no hint about the route to a stranger), after deny.
    XCTAssertEqual(outcome("api.example.com", "bob", method: "POST"), "403 client_not_allowed")
    XCTAssertEqual(outcome("api.example.com", "alice", method: "POST"), "405 method_not_allowed")
    XCTAssertEqual(outcome("gone.example.com", "bob"), "403 denied")
    XCTAssertEqual(outcome("open.example.com", "bob"), "forward #2")
    XCTAssertEqual(outcome("open.example.com", nil), "forward #2")
    // Without a client the allow list is not consulted.
    guard
      case .forward = r.decide(method: "GET", host: "api.example.com", explicitPort: nil, path: "/")
    else { return XCTFail() }
    guard
      case .refuse(_, let reason, let match) = r.decide(
        method: "GET", host: "api.example.com", explicitPort: nil, path: "/", client: "bob")
    else { return XCTFail() }
    XCTAssertEqual(reason, "client \"bob\" is not allowed by route #1 api.example.com (line 7)")
    XCTAssertEqual(match?.number, 1)
    guard
      case .refuse(_, let anon, _) = r.decide(
        method: "GET", host: "api.example.com", explicitPort: nil, path: "/", client: nil)
    else { return XCTFail() }
    XCTAssertEqual(anon, "anonymous callers are not allowed by route #1 api.example.com (line 7)")
  }

  func testIPv4MappedHostsRouteAsIPv4() throws {
    let r = try router(
      "route 169.254.169.254 {\n  deny\n}\nroute [::ffff:10.0.0.1] {\n}\nroute * {\n}\n")
    for host in ["::ffff:169.254.169.254", "[::ffff:a9fe:a9fe]", "0:0:0:0:0:ffff:169.254.169.254"] {
      guard
        case .refuse(.denied, _, _) = r.decide(
          method: "GET", host: host, explicitPort: nil, path: "/")
      else { return XCTFail(host) }
    }
    guard
      case .forward(let m) = r.decide(method: "GET", host: "10.0.0.1", explicitPort: nil, path: "/")
    else { return XCTFail() }
    XCTAssertEqual(m.number, 2)
  }
}
