import Testing
import Config
@testable import Panel

/// The one mapping from the system's kinds of error to HTTP statuses, and an
/// error of any module answered through it.
@Suite struct ErrorStatusTests {
    @Test func eachKindHasTheStatusTheAPIAnswersWith() {
        let statuses: [ErrorKind: Int] = [.badRequest: 400, .notFound: 404, .conflict: 409, .tooLarge: 413,
                                          .invalid: 422, .failed: 500, .unavailable: 503, .noSpace: 507]
        #expect(Set(statuses.keys) == Set(ErrorKind.allCases))
        for (kind, status) in statuses { #expect(kind.status == status, "\(kind)") }
    }

    /// An error type the panel does not know: only its kind and message count.
    enum Shelf: DomainError {
        case full
        var kind: ErrorKind { .noSpace }
        var description: String { "the shelf is full" }
    }

    @Test func aDomainErrorIsAnsweredWithItsKindsStatusAndMessage() throws {
        let r = PanelAPI.errorResponse(Shelf.full)
        #expect(r.status == 507)
        #expect(try JSONValue.parse(r.bodyBytes) == .object(["error": .string("the shelf is full")]))
        let missing = PanelAPI.errorResponse(RequestError.notFound("no task 'x'"))
        #expect(missing.status == 404)
        #expect(try JSONValue.parse(missing.bodyBytes) == .object(["error": .string("no task 'x'")]))
    }

    @Test func anyOtherErrorIsAnInternalOne() {
        struct Odd: Error {}
        #expect(PanelAPI.errorResponse(Odd()).status == 500)
    }
}
