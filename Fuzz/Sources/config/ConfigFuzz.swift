// The proxy.conf parser: lexing, every directive, the cross-checks.
//
// Property: every diagnostic (error or warning) points into the input: line 1…(number of
// lines), column 1…(length of that line + 1), counted in Unicode scalars as the lexer does.
// Parsing is deterministic (the same text gives the same diagnostics in the same order), and a
// comment line appended at the end changes nothing.
import CredproxyConfig
import FuzzSupport

@main enum ConfigFuzz {
  static func main() { runFuzzer(fuzz) }
}

func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
  let lineLengths = scalarLineLengths(text)
  let first = diagnostics(text)
  for d in first.errors + first.warnings {
    fuzzCheck(
      d.line >= 1 && d.line <= lineLengths.count && d.column >= 1
        && d.column <= lineLengths[d.line - 1] + 1,
      """
      diagnostic outside the input (\(lineLengths.count) lines): \(d)
      input: \(escaped(Array(text.utf8)))
      """)
  }
  let second = diagnostics(text)
  fuzzCheck(
    first == second,
    """
    parsing the same text twice differs
    input: \(escaped(Array(text.utf8)))
    first:  \(first)
    second: \(second)
    """)
  let commented = diagnostics(text + "\n# a comment\n")
  fuzzCheck(
    first == commented,
    """
    a comment line at the end changes the diagnostics
    input: \(escaped(Array(text.utf8)))
    without: \(first)
    with:    \(commented)
    """)
  return 0
}

struct Diagnostics: Equatable {
  var errors: [ConfigDiagnostic] = []
  var warnings: [ConfigDiagnostic] = []
}

func diagnostics(_ text: String) -> Diagnostics {
  do {
    let config = try ConfigParser.parse(text: text, path: "/fuzz/proxy.conf")
    return Diagnostics(warnings: config.warnings)
  } catch let error as ConfigError {
    fuzzCheck(!error.diagnostics.isEmpty, "ConfigError without diagnostics")
    return Diagnostics(errors: error.diagnostics)
  } catch {
    fuzzCheck(false, "parse threw \(error), not a ConfigError")
    return Diagnostics()
  }
}

/// The length of each line in Unicode scalars, lines ending at LF; a leading BOM is not counted
/// (the lexer skips it).
func scalarLineLengths(_ text: String) -> [Int] {
  var lengths = [0]
  var first = true
  for scalar in text.unicodeScalars {
    defer { first = false }
    if first && scalar == "\u{FEFF}" { continue }
    if scalar == "\n" {
      lengths.append(0)
    } else {
      lengths[lengths.count - 1] += 1
    }
  }
  return lengths
}
