import Wire

// The address types live in `Wire`, the one definition of IP text; these names keep them where
// users of `CredproxyConfig` have always found them.
public typealias IPAddress = Wire.IPAddress
public typealias CIDR = Wire.CIDR
public typealias CIDRError = Wire.CIDRError
public typealias CanonicalHost = Wire.CanonicalHost
typealias IPText = Wire.IPText
public typealias ErrorCode = Wire.ErrorCode
