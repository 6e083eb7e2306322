/// A unified diff (`diff -u` format, 3 lines of context) between two texts, line by line, from a
/// longest common subsequence. Config files are small: the quadratic table is fine.
public enum UnifiedDiff {
  public static func make(
    old: String, new: String, oldName: String, newName: String, context: Int = 3
  ) -> String {
    let a = lines(old)
    let b = lines(new)
    if a == b { return "" }
    let ops = script(a, b)
    var out = "--- \(oldName)\n+++ \(newName)\n"
    // Group the edit script into hunks: changes closer than 2*context share one.
    var i = 0
    while i < ops.count {
      guard ops[i].kind != .same else {
        i += 1
        continue
      }
      var start = i
      var back = 0
      while start > 0 && back < context && ops[start - 1].kind == .same {
        start -= 1
        back += 1
      }
      var end = i
      var sameRun = 0
      while end < ops.count {
        if ops[end].kind == .same {
          sameRun += 1
          if sameRun > 2 * context { break }
        } else {
          sameRun = 0
        }
        end += 1
      }
      // Keep at most `context` trailing lines.
      end -= max(0, sameRun - context)
      let hunk = ops[start..<end]
      let oldStart = hunk.first!.oldLine
      let newStart = hunk.first!.newLine
      let oldCount = hunk.filter { $0.kind != .insert }.count
      let newCount = hunk.filter { $0.kind != .delete }.count
      out += "@@ -\(range(oldStart, oldCount)) +\(range(newStart, newCount)) @@\n"
      for op in hunk {
        switch op.kind {
        case .same: out += " " + a[op.oldLine - 1]
        case .delete: out += "-" + a[op.oldLine - 1]
        case .insert: out += "+" + b[op.newLine - 1]
        }
        out += "\n"
      }
      i = end
    }
    return out
  }

  enum Kind { case same, delete, insert }
  struct Op {
    var kind: Kind
    /// 1-based line in the old text (for an insert: the old line it comes before).
    var oldLine: Int
    var newLine: Int
  }

  static func lines(_ text: String) -> [String] {
    var parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if parts.last == "" { parts.removeLast() }
    return parts
  }

  /// `-L,N`: an empty range starts one line earlier, as diff writes it.
  static func range(_ start: Int, _ count: Int) -> String {
    count == 0 ? "\(start - 1),0" : "\(start),\(count)"
  }

  static func script(_ a: [String], _ b: [String]) -> [Op] {
    let n = a.count
    let m = b.count
    // lcs[i][j]: length of the LCS of a[i...] and b[j...].
    var lcs = [Int32](repeating: 0, count: (n + 1) * (m + 1))
    let w = m + 1
    if n > 0 && m > 0 {
      for i in stride(from: n - 1, through: 0, by: -1) {
        for j in stride(from: m - 1, through: 0, by: -1) {
          lcs[i * w + j] =
            a[i] == b[j]
            ? lcs[(i + 1) * w + j + 1] + 1 : max(lcs[(i + 1) * w + j], lcs[i * w + j + 1])
        }
      }
    }
    var ops: [Op] = []
    var i = 0
    var j = 0
    while i < n || j < m {
      if i < n && j < m && a[i] == b[j] {
        ops.append(Op(kind: .same, oldLine: i + 1, newLine: j + 1))
        i += 1
        j += 1
      } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
        // Deletions before insertions, as diff prints a changed line.
        ops.append(Op(kind: .delete, oldLine: i + 1, newLine: j + 1))
        i += 1
      } else {
        ops.append(Op(kind: .insert, oldLine: i + 1, newLine: j + 1))
        j += 1
      }
    }
    return ops
  }
}
