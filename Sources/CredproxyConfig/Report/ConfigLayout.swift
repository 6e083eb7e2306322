import Foundation

/// Where the top-level blocks of a config file sit, by line, read with the config's own lexer:
/// what `credproxy report` needs to rewrite a route or a client in place and keep the rest of the
/// file (comments included) as written.
public struct ConfigBlock: Sendable, Equatable {
  /// The directive that opens the block, lowercased (`route`, `client`, `credentials`).
  public var keyword: String
  /// The line of the directive and the line of its closing `}` (equal for a one-line block).
  public var startLine: Int
  public var endLine: Int
  /// The directives directly inside the block: lowercased name and line.
  public var directives: [(name: String, line: Int)]

  public static func == (a: ConfigBlock, b: ConfigBlock) -> Bool {
    a.keyword == b.keyword && a.startLine == b.startLine && a.endLine == b.endLine
      && a.directives.map(\.name) == b.directives.map(\.name)
      && a.directives.map(\.line) == b.directives.map(\.line)
  }
}

public enum ConfigLayout {
  /// The top-level blocks of `text`, in file order. Lexing errors are ignored: the text is one
  /// the parser has accepted.
  public static func blocks(_ text: String) -> [ConfigBlock] {
    var errors: [ConfigDiagnostic] = []
    var blocks: [ConfigBlock] = []
    var depth = 0
    var open: ConfigBlock?
    for statement in Lexer.lex(text, file: "", errors: &errors) {
      var leading = true
      for token in statement.tokens {
        if token.isOpen {
          if depth == 0 {
            open = ConfigBlock(
              keyword: statement.head.keyword, startLine: statement.line,
              endLine: statement.line, directives: [])
          }
          depth += 1
        } else if token.isClose {
          depth -= 1
          if depth == 0, var block = open {
            block.endLine = token.line
            blocks.append(block)
            open = nil
          }
        } else if leading && depth == 1 && token.line != open?.startLine {
          open?.directives.append((token.keyword, token.line))
        }
        leading = token.isClose && leading
      }
    }
    return blocks
  }
}

extension ConfigLayout {
  /// The inline (literal) secrets written in `text`, as the parser warned about them ("inline
  /// secret in the config file"), each as its value and, when it differs, as written between
  /// quotes. Whatever prints lines of the file (`credproxy report`'s diff) redacts these.
  public static func inlineSecrets(_ text: String, config: ProxyConfig) -> [String] {
    let places = Set(
      config.warnings.filter { $0.message.hasPrefix("inline secret") }.map {
        "\($0.line):\($0.column)"
      })
    guard !places.isEmpty else { return [] }
    var errors: [ConfigDiagnostic] = []
    var out: [String] = []
    for statement in Lexer.lex(text, file: "", errors: &errors) {
      for t in statement.tokens where places.contains("\(t.line):\(t.column)") {
        out.append(t.text)
        let written = t.text.replacingOccurrences(of: "\\", with: "\\\\")
          .replacingOccurrences(of: "\"", with: "\\\"")
        if written != t.text { out.append(written) }
      }
    }
    // Longest first, so a secret that contains another is replaced whole.
    return out.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
  }
}
