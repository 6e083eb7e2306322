// swift-tools-version:6.0
import PackageDescription

// credproxy: a credential-injecting egress proxy.
// No Swift package dependencies: only the toolchain and two C system libraries.
let package = Package(
  name: "credproxy",
  products: [
    .executable(name: "credproxy", targets: ["credproxy"]),
    // The pure modules, as libraries so that the fuzz package (Fuzz/Package.swift) can use them.
    .library(name: "HTTP1", targets: ["HTTP1"]),
    .library(name: "CredproxyConfig", targets: ["CredproxyConfig"]),
    .library(name: "EgressPolicy", targets: ["EgressPolicy"]),
    .library(name: "AuditReport", targets: ["AuditReport"]),
  ],
  targets: [
    .systemLibrary(
      name: "CCurl",
      pkgConfig: "libcurl",
      providers: [.apt(["libcurl4-openssl-dev"])]
    ),
    .systemLibrary(
      name: "CCrypto",
      pkgConfig: "libcrypto",
      providers: [.apt(["libssl-dev"])]
    ),
    // epoll, eventfd and timerfd are not exported by Swift's Glibc module.
    .systemLibrary(name: "CSystem"),
    // zlib, to read rotated audit logs that logrotate compressed (`credproxy report`).
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // The one definition of each wire-level rule: IP text and CIDR blocks, host
    // canonicalisation, hex, JSON string escaping, ISO 8601 timestamps, constant-time compare,
    // hop-by-hop header names, scope lists. Depends on nothing but the standard library.
    .target(name: "Wire"),
    // The inbound HTTP/1.1 codec: strict request parsing, body framing. Pure Swift, no I/O.
    .target(name: "HTTP1", dependencies: ["Wire"]),
    // proxy.conf: the language, the validated model, the routing table and `explain`.
    .target(name: "CredproxyConfig", dependencies: ["HTTP1", "Wire"]),
    // Google credentials without I/O: key files, JWT assertions signed RS256 with libcrypto,
    // token responses, scope normalisation, and the token cache's state machine.
    .target(name: "GoogleAuth", dependencies: ["CCrypto", "Wire"]),
    // The local CA for HTTPS interception: CA creation and loading, leaf minting, the leaf cache,
    // trust-store instructions. libcrypto/libssl only; no I/O on the minting path.
    .target(name: "LocalCA", dependencies: ["CCrypto"]),
    // Shared egress policy: client identities, SSRF guards, rate and concurrency limits, audit
    // records, metrics, the status page. Pure logic, no I/O.
    .target(name: "EgressPolicy", dependencies: ["CredproxyConfig", "HTTP1", "Wire"]),
    // `credproxy report`: audit logs (plain or gzip, streamed) summarised per client and route,
    // and a tightened config proposed as a unified diff.
    .target(name: "AuditReport", dependencies: ["CredproxyConfig", "HTTP1", "Wire", "CZlib"]),
    // The running proxy: event loops, listener, upstream transfers over libcurl, access log.
    .target(
      name: "CredproxyCore",
      dependencies: [
        "HTTP1", "CredproxyConfig", "GoogleAuth", "EgressPolicy", "Wire", "CCurl", "CCrypto",
        "CSystem", "LocalCA",
      ]
    ),
    .executableTarget(
      name: "credproxy",
      dependencies: ["CredproxyCore", "CredproxyConfig", "HTTP1", "LocalCA", "AuditReport"]
    ),
    .testTarget(name: "WireTests", dependencies: ["Wire"]),
    .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"]),
    .testTarget(name: "CredproxyConfigTests", dependencies: ["CredproxyConfig", "HTTP1"]),
    .testTarget(name: "GoogleAuthTests", dependencies: ["GoogleAuth"]),
    .testTarget(name: "LocalCATests", dependencies: ["LocalCA", "CCrypto"]),
    .testTarget(
      name: "AuditReportTests",
      dependencies: ["AuditReport", "CredproxyConfig", "EgressPolicy", "Wire"]
    ),
    .testTarget(name: "EgressPolicyTests", dependencies: ["EgressPolicy", "CredproxyConfig"]),
    .testTarget(
      name: "CredproxyCoreTests",
      dependencies: ["CredproxyCore", "CredproxyConfig", "HTTP1", "GoogleAuth", "EgressPolicy"]),
  ]
)
