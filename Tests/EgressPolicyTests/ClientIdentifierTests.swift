import CredproxyConfig
import EgressPolicy
import Foundation
import XCTest

final class ClientIdentifierTests: XCTestCase {
  let env = ["ALICE_PW": "wonder:land", "CI_TOKEN": "tok-ci-123", "OPS_TOKEN": "tok-ops-456"]

  func config() throws -> ProxyConfig {
    try ConfigParser.parse(
      text: """
        client alice {
          password env:ALICE_PW
        }
        client ci {
          token env:CI_TOKEN
          from 10.20.0.0/16
        }
        client office {
          from 192.168.0.0/16 ::1/128
        }
        client lab {
          from 192.168.7.0/24
        }
        client ops {
          token env:OPS_TOKEN
          password env:OPS_PW_UNSET
        }
        route a.example.com {
        }
        """, path: "proxy.conf")
  }

  func basic(_ user: String, _ password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
  }

  let somewhere = IPAddress("203.0.113.9")!

  func testBasic() throws {
    let id = ClientIdentifier(config: try config(), environment: env)
    XCTAssertEqual(
      id.identify(proxyAuthorization: basic("alice", "wonder:land"), peer: somewhere),
      .client("alice"))
    XCTAssertEqual(
      id.identify(
        proxyAuthorization: "bAsIc  " + Data("alice:wonder:land".utf8).base64EncodedString() + " ",
        peer: somewhere), .client("alice"))
    // Wrong password, unknown user, a user without a password: all rejected alike.
    guard
      case .rejected(let r1) = id.identify(
        proxyAuthorization: basic("alice", "wonder"), peer: somewhere),
      case .rejected(let r2) = id.identify(
        proxyAuthorization: basic("mallory", "wonder:land"), peer: somewhere),
      case .rejected = id.identify(proxyAuthorization: basic("ci", "tok-ci-123"), peer: somewhere),
      case .rejected = id.identify(proxyAuthorization: basic("alice", ""), peer: somewhere),
      case .rejected = id.identify(
        proxyAuthorization: basic("ALICE", "wonder:land"), peer: somewhere)
    else { return XCTFail("expected rejections") }
    XCTAssertEqual(r1, "Basic proxy credentials for \"alice\" not accepted")
    XCTAssertEqual(r2, "Basic proxy credentials for \"mallory\" not accepted")
    XCTAssertFalse(r1.contains("wonder"))
    // Bad credentials are rejected even from an address a `from` block covers.
    XCTAssertEqual(
      id.identify(proxyAuthorization: basic("alice", "nope"), peer: IPAddress("192.168.1.1")!),
      .rejected("Basic proxy credentials for \"alice\" not accepted"))
    // Malformed.
    for bad in [
      "Basic", "Basic !!!", "Basic " + Data("nocolon".utf8).base64EncodedString(),
      "Basic YWxpY2U6d29uZGVy=bGFuZA",
    ] {
      guard case .rejected(let why) = id.identify(proxyAuthorization: bad, peer: somewhere) else {
        return XCTFail(bad)
      }
      XCTAssertTrue(why.hasPrefix("malformed Basic"), why)
    }
  }

  func testBearer() throws {
    let id = ClientIdentifier(config: try config(), environment: env)
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Bearer tok-ci-123", peer: somewhere), .client("ci"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: "bearer tok-ops-456", peer: somewhere), .client("ops"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Bearer tok-ci-12", peer: somewhere),
      .rejected("Bearer proxy token not accepted"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Bearer tok-ci-1234", peer: somewhere),
      .rejected("Bearer proxy token not accepted"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Bearer ", peer: somewhere),
      .rejected("malformed Bearer Proxy-Authorization; expected Bearer TOKEN"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Digest x", peer: somewhere),
      .rejected("unsupported Proxy-Authorization scheme \"Digest\"; expected Basic or Bearer"))
  }

  func testAddresses() throws {
    let id = ClientIdentifier(config: try config(), environment: env)
    XCTAssertEqual(
      id.identify(proxyAuthorization: nil, peer: IPAddress("10.20.3.4")!), .client("ci"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: nil, peer: IPAddress("::ffff:10.20.3.4")!), .client("ci"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: nil, peer: IPAddress("192.168.1.1")!), .client("office"))
    // The longest prefix wins.
    XCTAssertEqual(
      id.identify(proxyAuthorization: nil, peer: IPAddress("192.168.7.1")!), .client("lab"))
    XCTAssertEqual(id.identify(proxyAuthorization: nil, peer: IPAddress("::1")!), .client("office"))
    XCTAssertEqual(
      id.identify(proxyAuthorization: nil, peer: IPAddress("10.21.0.1")!),
      .rejected(
        "proxy authentication required: no Proxy-Authorization, and no client is identified by address 10.21.0.1"
      ))
    XCTAssertEqual(ClientIdentifier.challenge, "Basic realm=\"credproxy\"")
    XCTAssertEqual(Identification.client("x").clientName, "x")
    XCTAssertNil(Identification.anonymous.clientName)
  }

  func testNoClientsMeansAnonymous() throws {
    let id = ClientIdentifier(
      config: try ConfigParser.parse(text: "route a.b {\n}\n"), environment: [:])
    XCTAssertFalse(id.clientsDefined)
    XCTAssertEqual(id.identify(proxyAuthorization: nil, peer: somewhere), .anonymous)
    XCTAssertEqual(id.identify(proxyAuthorization: "Bearer whatever", peer: somewhere), .anonymous)
  }

  func testUnresolvableSecretsAreProblemsNotValues() throws {
    let id = ClientIdentifier(config: try config(), environment: env)
    XCTAssertEqual(
      id.problems,
      [
        "client \"ops\": password env:OPS_PW_UNSET is not set; Basic authentication as ops is refused"
      ])
    // Its token still works; its password cannot.
    XCTAssertEqual(
      id.identify(proxyAuthorization: "Bearer tok-ops-456", peer: somewhere), .client("ops"))
    guard case .rejected = id.identify(proxyAuthorization: basic("ops", ""), peer: somewhere) else {
      return XCTFail()
    }
    // Two clients whose tokens resolve to the same value: neither token identifies.
    let twins = ClientIdentifier(
      clients: [
        ClientSpec(name: "a", token: .env("T1"), line: 1),
        ClientSpec(name: "b", token: .env("T2"), line: 2),
      ], environment: ["T1": "same", "T2": "same"])
    XCTAssertEqual(
      twins.problems,
      ["clients \"a\" and \"b\" have the same token; Bearer authentication with it is refused"])
    XCTAssertEqual(
      twins.identify(proxyAuthorization: "Bearer same", peer: somewhere),
      .rejected("Bearer proxy token not accepted"))
    for p in id.problems + twins.problems {
      for v in env.values { XCTAssertFalse(p.contains(v)) }
      XCTAssertFalse(p.contains("same\""))
    }
  }
}
