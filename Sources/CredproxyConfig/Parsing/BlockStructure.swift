// Block structure and error recovery: which lines open and close blocks, how a misplaced brace or
// a forgotten `}` is reported once instead of cascading, and how each line inside a block is
// dispatched through the directive table (unknown and misplaced directives, duplicates, argument
// counts). What a directive means is in Directives.swift.

/// Where a directive can be written.
enum BlockKind: String, CaseIterable, Sendable {
  case top = "top level"
  case route
  case credentials
  case client

  /// "at top level", "in a route block": where a line was written.
  var placeText: String { self == .top ? "at top level" : "in a \(rawValue) block" }

  /// How many of a once-only directive a block may have: "expected at most one per route".
  var onceText: String {
    switch self {
    case .top: "at top level"
    case .route: "per route"
    case .credentials: "per credentials block"
    case .client: "per client"
    }
  }
}

/// The block being read: what its lines build, and which directives it has seen.
struct Block {
  let kind: BlockKind
  /// Each once-only directive read so far, with its line.
  var seen: [String: Int] = [:]
  /// Every directive written in the block, including lines that failed to parse.
  var written: Set<String> = []
  var route: RouteDraft?
  var client: ClientDraft?
  var credentials: CredentialsDraft?
}

extension ParseSession {
  /// Reads the top level: each block-opening line with its body, every other line as a top-level
  /// directive.
  mutating func readTopLevel(_ statements: [Statement]) {
    var i = 0
    while i < statements.count {
      let s = statements[i]
      i += 1
      let head = s.head
      if head.isClose {
        error(head, "unexpected }: no block is open; expected a directive")
        continue
      }
      let opens = s.tokens.count > 1 && s.tokens.last!.isOpen
      if let opener = Directive.named[head.keyword]?.opens {
        if !opens {
          error(
            s.tokens.last!,
            "\(head.keyword) opens a block; expected \(opener.usage) with { at the end of the line")
          continue
        }
        let body = collectBody(statements, &i, opener: s, kind: head.keyword)
        opener.read(&self, s, body)
        continue
      }
      if opens {
        error(
          s.tokens.last!,
          "\(head.text) does not open a block; expected { only after \(Directive.openingNames)")
        _ = collectBody(statements, &i, opener: s, kind: head.keyword)
        continue
      }
      var block = top
      read(s, into: &block)
      top = block
    }
  }

  /// Drops misplaced braces (with errors) and joins a `{` written on its own line to the line
  /// before, so that one slip does not cascade into errors for a whole block.
  mutating func structure(_ input: [Statement]) -> [Statement] {
    var out: [Statement] = []
    for var s in input {
      if s.head.isClose {
        if s.tokens.count > 1 {
          error(
            s.tokens[1], "unexpected \"\(s.tokens[1].text)\" after }; expected } alone on its line")
          s.tokens = [s.head]
        }
        out.append(s)
        continue
      }
      if s.tokens.count == 1 && s.head.isOpen {
        if var previous = out.last, !previous.head.isClose, !previous.tokens.last!.isOpen {
          error(
            s.head,
            "{ must end the line that opens the block; expected \(previous.head.text) … { on one line"
          )
          previous.tokens.append(s.head)
          out[out.count - 1] = previous
        } else {
          error(s.head, "unexpected {; expected \(Directive.openingForms)")
        }
        continue
      }
      var kept: [Token] = []
      for (n, t) in s.tokens.enumerated() {
        if t.isOpen && n != s.tokens.count - 1 {
          error(t, "unexpected {; expected { only at the end of a line that opens a block")
        } else if t.isClose {
          error(t, "} must be on a line of its own; expected } alone to close a block")
        } else {
          kept.append(t)
        }
      }
      if !kept.isEmpty && !(kept.count == 1 && kept[0].isOpen) {
        s.tokens = kept
        out.append(s)
      }
    }
    return out
  }

  /// The statements of a block, up to its `}`. A `route`/`credentials` line inside a block means
  /// the `}` was forgotten: report it and end the block there.
  mutating func collectBody(_ all: [Statement], _ i: inout Int, opener: Statement, kind: String)
    -> [Statement]
  {
    var body: [Statement] = []
    let brace = opener.tokens.last!
    while i < all.count {
      let s = all[i]
      if s.head.isClose {
        i += 1
        return body
      }
      if s.tokens.count > 1 && s.tokens.last!.isOpen {
        let k = s.head.keyword
        if Directive.named[k]?.opens != nil {
          error(
            s.head,
            "\(kind) block opened on line \(opener.line) is not closed; expected } before this \(k) block"
          )
          return body
        }
        error(
          s.tokens.last!, "unexpected block inside a \(kind) block; expected blocks not to nest")
        i += 1
        var depth = 1
        while i < all.count && depth > 0 {
          if all[i].head.isClose { depth -= 1 }
          if all[i].tokens.count > 1 && all[i].tokens.last!.isOpen { depth += 1 }
          i += 1
        }
        continue
      }
      body.append(s)
      i += 1
    }
    error(brace, "\(kind) block is not closed at end of file; expected } on a line of its own")
    return body
  }

  // MARK: Dispatch

  /// Reads one line of a block through the directive table: a directive not allowed here is an
  /// error that lists what is; a second once-only directive and a wrong argument count are
  /// reported before the handler runs.
  mutating func read(_ s: Statement, into block: inout Block) {
    guard let d = Directive.named[s.head.keyword], let handler = d.handler(in: block.kind) else {
      unknown(s, in: block.kind)
      return
    }
    block.written.insert(d.name)
    if !d.repeatable {
      guard once(s, &block.seen, block.kind.onceText) else { return }
    }
    guard arity(s, d) else { return }
    handler(&self, s, &block)
  }

  /// Reads every line of a block's body.
  mutating func read(_ body: [Statement], into block: inout Block) {
    for s in body { read(s, into: &block) }
  }

  mutating func once(_ s: Statement, _ seen: inout [String: Int], _ context: String) -> Bool {
    let k = s.head.keyword
    if let first = seen[k] {
      error(s.head, "duplicate \(k) (first set on line \(first)); expected at most one \(context)")
      return false
    }
    seen[k] = s.line
    return true
  }

  /// Checks the argument count the table gives a directive.
  mutating func arity(_ s: Statement, _ d: Directive) -> Bool {
    switch d.arity {
    case .exactly(let n):
      return arity(s, n, d.usage)
    case .oneOrMore(let missing):
      guard s.tokens.count > 1 else {
        error(s.head, "\(d.name) is missing \(missing); expected \(d.usage)")
        return false
      }
      return true
    case .checkedByHandler:
      return true
    }
  }

  /// Checks the number of arguments after the first `skip` words.
  mutating func arity(_ s: Statement, _ n: Int, _ usage: String, skip: Int = 1) -> Bool {
    let got = s.tokens.count - skip
    let what = s.tokens[0..<skip].map(\.text).joined(separator: " ")
    if got < n {
      let missing = n == 1 ? "its argument" : (got == 0 ? "its arguments" : "an argument")
      error(s.tokens[skip - 1], "\(what) is missing \(missing); expected \(usage)")
      return false
    }
    if got > n {
      error(s.tokens[skip + n], "too many arguments to \(what); expected \(usage)")
      return false
    }
    return true
  }

  /// A directive that is not allowed in `kind`: says where it is allowed, if anywhere, and lists
  /// what is allowed here.
  mutating func unknown(_ s: Statement, in kind: BlockKind) {
    let list = Directive.names(in: kind).joined(separator: ", ")
    let place = kind.placeText
    guard let elsewhere = Directive.named[s.head.keyword]?.placesText(otherThan: kind) else {
      error(s.head, "unknown directive \"\(s.head.text)\"; expected one of \(list) \(place)")
      return
    }
    error(s.head, "\(s.head.keyword) is only valid \(elsewhere); expected one of \(list) \(place)")
  }
}
