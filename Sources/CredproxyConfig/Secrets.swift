import Foundation

/// A secret that cannot be read. The message names the source (`env:EXAMPLE_TOKEN is not set`),
/// never a value.
public struct SecretError: Error, Sendable, Equatable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

extension SecretRef {
  /// Reads the secret now. Trailing CR/LF are trimmed (a file saved by an editor, `echo`);
  /// an empty value, or one holding CR, LF or NUL (it goes in a header), is an error;
  /// `multiline` allows line breaks (a PEM private key, which never goes in a header).
  public func resolve(
    environment: [String: String] = ProcessInfo.processInfo.environment, multiline: Bool = false
  ) throws(SecretError) -> String {
    let raw: String
    switch self {
    case .literal(let v):
      raw = v
    case .env(let name):
      guard let v = environment[name] else { throw SecretError("env:\(name) is not set") }
      raw = v
    case .file(let path):
      var isDir: ObjCBool = false
      guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
        throw SecretError("file:\(path) does not exist")
      }
      if isDir.boolValue { throw SecretError("file:\(path) is a directory") }
      guard let data = FileManager.default.contents(atPath: path) else {
        throw SecretError("file:\(path) cannot be read")
      }
      guard let text = String(data: data, encoding: .utf8) else {
        throw SecretError("file:\(path) is not UTF-8 text")
      }
      raw = text
    }
    var value = Substring(raw)
    while let last = value.unicodeScalars.last, last == "\n" || last == "\r" {
      value = Substring(value.unicodeScalars.dropLast())
    }
    if value.isEmpty { throw SecretError("\(self) is empty") }
    if value.unicodeScalars.contains(where: {
      $0 == "\0" || (!multiline && ($0 == "\n" || $0 == "\r"))
    }) {
      throw SecretError("\(self) holds a line break or NUL, which a header value cannot carry")
    }
    return String(value)
  }

  /// `nil` when the secret resolves, else why not (names the source only).
  public func problem(environment: [String: String], multiline: Bool = false) -> String? {
    do {
      _ = try resolve(environment: environment, multiline: multiline)
      return nil
    } catch {
      return error.message
    }
  }
}
