// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for credproxy's parsers. A package of its own, so that the root package's
// `swift build` and `swift test` never see them: a fuzz target has no `main` and only links with
// `-sanitize=fuzzer`. Build and run them with `scripts/fuzz [SECONDS] [TARGET…]`.
//
// Adding a target: write `Sources/<name>/<Name>Fuzz.swift`, an `@main` type whose `main` calls
// `runFuzzer` with the test function (see `Sources/host`), add one line below, and optionally
// seeds in `corpus/<name>/`.
let fuzzTargets: [(name: String, modules: [String])] = [
  ("request-head", ["HTTP1"]),
  ("body-decoder", ["HTTP1"]),
  ("config", ["CredproxyConfig"]),
  ("host", ["HTTP1", "CredproxyConfig", "EgressPolicy"]),
  ("upstream-head", ["HTTP1"]),
  ("audit-line", ["AuditReport", "EgressPolicy"]),
]

let package = Package(
  name: "credproxy-fuzz",
  dependencies: [.package(name: "credproxy", path: "..")],
  targets: [
    // Splitting inputs, and trapping with a message when a property fails.
    .target(
      name: "FuzzSupport",
      dependencies: ["CFuzzerDriver", .product(name: "HTTP1", package: "credproxy")]),
    .target(name: "CFuzzerDriver"),
  ]
    + fuzzTargets.map { target in
      .executableTarget(
        name: target.name,
        dependencies: ["FuzzSupport"]
          + target.modules.map { .product(name: $0, package: "credproxy") },
        // `@main` in a file not called main.swift.
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]
      )
    }
)
