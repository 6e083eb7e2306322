import Glibc

/// A NUL-terminated C string (curl's and OpenSSL's error texts) as a String; "" for NULL.
func cString(_ p: UnsafePointer<CChar>?) -> String {
  guard let p else { return "" }
  return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
}

/// A C character buffer filled by a C function (inet_ntop, ERR_error_string_n) as a String.
func cString(_ chars: [CChar]) -> String {
  chars.withUnsafeBufferPointer { cString($0.baseAddress) }
}
