import Dispatch
import Foundation
import GoogleAuth

/// Obtains an `external_account`'s subject token, afresh for every mint (never cached past the
/// token it pays for; only an executable's `output_file` is reused while its `expiration_time`
/// holds, as Google's libraries do). Files and programs are read on a worker thread, URLs on the
/// loop's curl multi; `completion` runs on the loop. Failures name the source, never the content.
enum SubjectTokenSource {
  typealias Completion = (Result<String, TokenEndpointError>) -> Void

  static func fetch(
    _ account: ExternalAccount, environment: [String: String], transport: MintTransport,
    context: LoopContext, _ done: @escaping Completion
  ) {
    let label = account.sourceDescription
    @Sendable func failure(_ why: String, retryable: Bool = false) -> Result<
      String, TokenEndpointError
    > {
      .failure(
        TokenEndpointError(
          status: 0, error: nil, errorDescription: why, retryable: retryable, source: label))
    }
    switch account.source {
    case .file(let path, let format):
      onWorker(context) {
        guard let data = FileManager.default.contents(atPath: path) else {
          return failure("cannot be read")
        }
        return SubjectTokens.extract(Array(data), format: format).mapError { problem in
          TokenEndpointError(
            status: 0, error: nil, errorDescription: problem.description, retryable: false,
            source: label)
        }
      } done: {
        done($0)
      }

    case .url(let url, let headers, let format):
      let spec = HTTPRequestSpec(
        method: "GET", url: url, headers: headers.map { ($0.name, $0.value) })
      transport.fetch(spec, 10_000, context) { result in
        switch result {
        case .failure(let error):
          done(failure("\(error.code): \(error.message)", retryable: true))
        case .success(let response):
          guard response.status == 200 else {
            done(
              failure(
                "HTTP \(response.status)",
                retryable: TokenResponses.isRetryable(status: response.status, error: nil)))
            return
          }
          done(
            SubjectTokens.extract(response.body, format: format).mapError { problem in
              TokenEndpointError(
                status: 0, error: nil, errorDescription: problem.description, retryable: false,
                source: label)
            })
        }
      }

    case .executable(let command, let timeoutMs, let outputFile):
      onWorker(context) {
        let now = TokenBroker.now()
        if let outputFile, let cached = FileManager.default.contents(atPath: outputFile),
          case .success(let response) = SubjectTokens.executableResponse(
            Array(cached), now: now, requireExpiration: true)
        {
          return .success(response.token)
        }
        guard let path = ProgramRunner.locate(command[0], searchPath: environment["PATH"]) else {
          return failure(ProgramRunner.notRunnable(command[0]))
        }
        let outcome = ProgramRunner.run(
          path: path, arguments: Array(command.dropFirst()), environment: environment,
          timeoutMs: timeoutMs)
        guard outcome.succeeded else { return failure(outcome.termination.description) }
        var output = outcome.stdout
        if output.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }),
          let outputFile, let written = FileManager.default.contents(atPath: outputFile)
        {
          output = Array(written)
        }
        switch SubjectTokens.executableResponse(output, now: TokenBroker.now()) {
        case .success(let response): return .success(response.token)
        case .failure(let problem): return failure("exited with status 0 but \(problem)")
        }
      } done: {
        done($0)
      }
    }
  }

  /// Runs blocking `work` on a Dispatch worker thread and hands its result back on the loop.
  private static func onWorker(
    _ context: LoopContext, _ work: @escaping @Sendable () -> Result<String, TokenEndpointError>,
    done: @escaping Completion
  ) {
    let loop = context.loop
    let resume = LoopBound(loop: loop, done)
    DispatchQueue.global().async {
      let result = work()
      loop.execute { resume.value(result) }
    }
  }
}
