import HTTP1
import XCTest

@testable import CredproxyCore

final class PlaceholderTests: XCTestCase {
  func head(_ pairs: [(String, String)]) -> RequestHead {
    RequestHead(
      method: "GET", target: .origin(pathAndQuery: "/"), version: .http11,
      headers: pairs.map { HeaderField(name: $0.0, value: $0.1) }, framing: .none,
      keepAlive: true, expectContinue: false, authority: Authority(host: "h", port: nil))
  }

  func testRegistryIsBoundedAndForgetsExpiredEntries() {
    let r = PlaceholderRegistry(capacity: 3)
    XCTAssertTrue(r.isEmpty)
    for i in 0..<5 { r.register("t\(i)", expiresAt: 1_000, now: 0) }
    XCTAssertEqual(r.entryCount, 3)
    XCTAssertFalse(r.contains("t0", now: 0))
    XCTAssertTrue(r.contains("t4", now: 0))
    XCTAssertFalse(r.contains("t4", now: 1_000 + Placeholder.graceSeconds + 1))
    r.register("late", expiresAt: 5_000, now: 2_000)
    XCTAssertEqual(r.entryCount, 1)
  }

  func testScreenReplacesOnlyWhatAMintedRouteReplacesAndRefusesTheRest() {
    let r = PlaceholderRegistry()
    let access = Placeholder.accessToken()
    let id = Placeholder.idToken(audience: "a", email: "e", subject: "1", now: 0)
    XCTAssertEqual(
      PlaceholderScreen.screen(
        head([("Authorization", "Bearer " + access)]), injected: nil, registry: r, now: 0), .clean)
    r.register(access, expiresAt: 100, now: 0)
    r.register(id, expiresAt: 100, now: 0)
    let serverless = head([
      ("authorization", "Bearer " + id), ("X-Other", "fine"),
      ("X-Serverless-Authorization", "Bearer " + id),
    ])
    XCTAssertEqual(
      PlaceholderScreen.screen(
        serverless, injected: "x-serverless-authorization", registry: r, now: 0),
      .forward(head([("X-Other", "fine")])))
    XCTAssertEqual(
      PlaceholderScreen.screen(
        head([("X-Key", "k=\(access);")]), injected: "Authorization", registry: r, now: 0),
      .refuse(field: "X-Key"))
    XCTAssertEqual(
      PlaceholderScreen.screen(
        head([("Authorization", "Bearer " + access)]), injected: nil, registry: r, now: 0),
      .refuse(field: "Authorization"))
    XCTAssertEqual(
      PlaceholderScreen.screen(
        head([("Proxy-Authorization", "Bearer " + access)]), injected: nil, registry: r, now: 0),
      .clean)
    let lookalike = Placeholder.accessTokenPrefix + "AAAA"
    XCTAssertEqual(
      PlaceholderScreen.screen(
        head([("Authorization", "Bearer " + lookalike)]), injected: nil, registry: r, now: 0),
      .clean)
  }

  func testStubAnswersAndRegistersWhatItHandsOut() {
    let r = PlaceholderRegistry()
    let stub = MetadataStub(
      email: "sa@p.iam.gserviceaccount.com", projectID: "p", numericProjectID: "0", registry: r)
    let flavor = [HeaderField(name: "Metadata-Flavor", value: "Google")]
    XCTAssertEqual(stub.answer(method: "GET", target: "/", headers: [], now: 0).status, 403)
    let token = stub.answer(
      method: "GET",
      target: "/computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b",
      headers: flavor, now: 0)
    XCTAssertEqual(token.status, 200)
    XCTAssertEqual(r.entryCount, 1)
    let id = stub.answer(
      method: "GET",
      target:
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Fx&format=full",
      headers: flavor, now: 0)
    XCTAssertTrue(id.body.hasPrefix(Placeholder.idTokenHeader + "."))
    XCTAssertTrue(r.contains(id.body, now: 0))
    XCTAssertEqual(
      stub.answer(
        method: "GET", target: "/computeMetadata/v1/project/project-id", headers: flavor, now: 0
      ).body, "p")
  }
}
