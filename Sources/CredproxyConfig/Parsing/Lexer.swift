/// One word of `proxy.conf`: bare or quoted, with where it starts (1-based line and column).
struct Token: Sendable {
  var text: String
  var quoted: Bool
  var line: Int
  var column: Int

  /// An unquoted `{`.
  var isOpen: Bool { !quoted && text == "{" }
  /// An unquoted `}`.
  var isClose: Bool { !quoted && text == "}" }
  /// The word as a keyword: keywords are case-insensitive.
  var keyword: String { text.lowercased() }
  /// True when the word is the (bare) keyword `k` (lowercase).
  func isKeyword(_ k: String) -> Bool { !quoted && keyword == k }
}

/// The words of one line; never empty.
struct Statement: Sendable {
  var tokens: [Token]
  var head: Token { tokens[0] }
  var line: Int { tokens[0].line }
  /// Everything after the directive name.
  var args: ArraySlice<Token> { tokens.dropFirst() }
}

/// Splits `proxy.conf` into lines of words. `#` starts a comment outside quotes; `"…"` quotes a
/// word (escapes `\"` and `\\`); `{` and `}` are words of their own.
enum Lexer {
  static func lex(_ text: String, file: String, errors: inout [ConfigDiagnostic]) -> [Statement] {
    let s = Array(text.unicodeScalars)
    let n = s.count
    var statements: [Statement] = []
    var current: [Token] = []
    var line = 1
    var i = 0
    if n > 0 && s[0] == "\u{FEFF}" { i = 1 }
    var lineStart = i

    func err(_ col: Int, _ message: String) {
      errors.append(ConfigDiagnostic(file: file, line: line, column: col, message: message))
    }
    func isDelimiter(_ c: Unicode.Scalar) -> Bool {
      c == " " || c == "\t" || c == "\r" || c == "\n" || c == "\u{0C}" || c == "#" || c == "{"
        || c == "}"
    }
    func isControl(_ c: Unicode.Scalar) -> Bool { c.value < 0x20 || c.value == 0x7F }

    while i < n {
      let c = s[i]
      let col = i - lineStart + 1
      switch c {
      case "\n":
        if !current.isEmpty {
          statements.append(Statement(tokens: current))
          current = []
        }
        line += 1
        i += 1
        lineStart = i
      case " ", "\t", "\r", "\u{0C}":
        i += 1
      case "#":
        while i < n && s[i] != "\n" { i += 1 }
      case "{", "}":
        current.append(Token(text: String(c), quoted: false, line: line, column: col))
        i += 1
      case "\"":
        i += 1
        var word = String.UnicodeScalarView()
        var closed = false
        while i < n {
          let d = s[i]
          if d == "\n" { break }
          if d == "\"" {
            closed = true
            i += 1
            break
          }
          if d == "\\" {
            if i + 1 < n && (s[i + 1] == "\"" || s[i + 1] == "\\") {
              word.append(s[i + 1])
              i += 2
              continue
            }
            err(
              i - lineStart + 1,
              "unknown escape in a quoted string; expected \\\" or \\\\ (other characters need no escape)"
            )
            word.append(d)
            i += 1
            continue
          }
          if isControl(d) && d != "\t" {
            err(i - lineStart + 1, "control character in a quoted string; expected printable text")
          }
          word.append(d)
          i += 1
        }
        if !closed {
          err(col, "unterminated quoted string; expected a closing \" on the same line")
        }
        current.append(Token(text: String(word), quoted: true, line: line, column: col))
        if closed && i < n && !isDelimiter(s[i]) {
          err(
            i - lineStart + 1,
            "unexpected character after a quoted string; expected a space between words")
        }
      default:
        var word = String.UnicodeScalarView()
        while i < n && !isDelimiter(s[i]) {
          let d = s[i]
          if d == "\"" {
            err(
              i - lineStart + 1,
              "quote inside a word; expected quotes around the whole word (\"…\")")
            break
          }
          if isControl(d) {
            err(i - lineStart + 1, "control character in a word; expected printable text")
          }
          word.append(d)
          i += 1
        }
        if !word.isEmpty {
          current.append(Token(text: String(word), quoted: false, line: line, column: col))
        }
      // A quote inside a word starts a new (quoted) word on the next turn.
      }
    }
    if !current.isEmpty { statements.append(Statement(tokens: current)) }
    return statements
  }
}
