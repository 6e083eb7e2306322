// Authority, host and IP canonicalisation: `Authority.parse` (Host header and request targets),
// `HostNormalizer.normalize` (the SSRF check's view of a host), `IPAddress` and `CIDR` text.
//
// Property: canonical forms are fixed points and the parsers agree with each other.
// - An authority prints as text that parses back to itself; its host is lowercase; an IPv6 host
//   is the same address for `IPAddress`, and a host that normalises to an address is written in
//   that address's canonical form; normalising the canonical host twice changes nothing, and
//   gives what normalising the host as the client wrote it gives.
// - An address (`IPAddress`, `inetAton`, from bytes) prints as text that parses back to it, and
//   `Authority.parse` reads that text (in brackets for IPv6) as the same address.
// - A CIDR block prints as text that parses back to it.
import CredproxyConfig
import EgressPolicy
import FuzzSupport
import HTTP1

@main enum HostFuzz {
  static func main() { runFuzzer(fuzz) }
}

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = fuzzBytes(data, size)
  let text = String(decoding: bytes, as: UTF8.self)
  checkAuthority(text)
  checkAddressText(text)
  if let block = CIDR(text) {
    fuzzCheck(CIDR(block.description) == block, "CIDR \(text) prints as \(block.description)")
  }
  if bytes.count >= 16, let address = IPAddress(bytes: bytes[0..<16]) {
    checkAddress(address, from: "16 bytes \(escaped(bytes[0..<16]))")
  }
  if bytes.count >= 4, let address = IPAddress(bytes: bytes[0..<4]) {
    checkAddress(address, from: "4 bytes \(escaped(bytes[0..<4]))")
  }
  return 0
}

func checkAuthority(_ text: String) {
  guard let authority = Authority.parse(Substring(text)) else { return }
  let printed = authority.description
  fuzzCheck(
    Authority.parse(Substring(printed)) == authority,
    "authority \(text) prints as \(printed), which parses as \(String(describing: Authority.parse(Substring(printed))))"
  )
  let host = authority.host
  fuzzCheck(
    !host.utf8.contains { $0 >= 0x41 && $0 <= 0x5A }, "authority \(text) has host \(host)")
  if authority.isIPv6 {
    fuzzCheck(
      IPAddress(host)?.family == .v6,
      "authority \(text) has IPv6 host \(host), which IPAddress reads as \(String(describing: IPAddress(host)))"
    )
  }
  let normalized = HostNormalizer.normalize(host)
  fuzzCheck(
    HostNormalizer.normalize(normalized.description) == normalized,
    "host \(host) normalises to \(normalized), and that to \(HostNormalizer.normalize(normalized.description))"
  )
  if let address = normalized.address {
    // A host a resolver would dial as an address is written as that address, canonically.
    let expected =
      authority.isIPv6 ? IPAddress(host) : IPAddress(host).flatMap { $0.isIPv4 ? $0 : nil }
    fuzzCheck(
      expected == address && (authority.isIPv6 || address.description == host),
      "authority \(text) has host \(host), which normalises to the address \(address)")
  }
  if authority.port == nil {
    let asWritten = HostNormalizer.normalize(text)
    fuzzCheck(
      asWritten == normalized,
      "host \(text) normalises to \(asWritten), its canonical form \(host) to \(normalized)")
  }
}

func checkAddressText(_ text: String) {
  if let address = IPAddress(text) {
    checkAddress(address, from: "text \(text)")
    if !text.utf8.contains(0x25) {
      // Without a zone, the same text is an authority (in brackets for IPv6).
      let spelled = address.isIPv4 ? text : "[\(text)]"
      let authority = Authority.parse(Substring(spelled))
      fuzzCheck(
        authority.flatMap { IPAddress($0.host) } == address,
        "address \(text) (\(address)) is the authority \(String(describing: authority))")
    }
  }
  if let address = IPAddress.inetAton(text) {
    checkAddress(address, from: "inet_aton text \(text)")
    fuzzCheck(
      IPAddress.inetAton(address.description) == address,
      "inet_aton reads \(text) as \(address), and \(address.description) differently")
    if text.utf8.first != 0x5B && text.utf8.last != 0x2E {
      fuzzCheck(
        HostNormalizer.normalize(text) == .ip(address),
        "inet_aton reads \(text) as \(address), HostNormalizer as \(HostNormalizer.normalize(text))"
      )
    }
  }
}

func checkAddress(_ address: IPAddress, from source: String) {
  let printed = address.description
  fuzzCheck(
    IPAddress(printed) == address,
    "\(source): \(address) prints as \(printed), which parses as \(String(describing: IPAddress(printed)))"
  )
  fuzzCheck(
    IPAddress(bytes: address.bytes) == address, "\(source): \(address) does not round-trip bytes")
  let authority = Authority.parse(Substring(address.uriText))
  fuzzCheck(
    authority.flatMap { IPAddress($0.host) } == address,
    "\(source): \(address.uriText) is the authority \(String(describing: authority))")
  fuzzCheck(
    HostNormalizer.normalize(printed) == .ip(address)
      && HostNormalizer.normalize(address.uriText) == .ip(address),
    "\(source): \(printed) normalises to \(HostNormalizer.normalize(printed))")
}
