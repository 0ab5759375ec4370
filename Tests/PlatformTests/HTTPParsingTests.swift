import Testing
@testable import Platform

/// Decodes a whole chunked stream fed in the given pieces: the body, or the failure.
func decodeChunked(_ pieces: [[UInt8]], limit: Int64 = .max) -> (body: [UInt8], failure: ChunkedDecoder.Failure?, finished: Bool) {
    var d = ChunkedDecoder(limit: limit)
    var body: [UInt8] = []
    do throws(ChunkedDecoder.Failure) {
        for p in pieces { for slice in try d.feed(p) { body += slice } }
        try d.finish()
        return (body, nil, d.isFinished)
    } catch {
        return (body, error, d.isFinished)
    }
}

@Suite struct ChunkedDecoderTests {
    static let stream = Array("5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-More: 2\r\n\r\n".utf8)
    static let body = Array("hello 0123456789".utf8)

    @Test func decodesInOnePiece() {
        let r = decodeChunked([Self.stream])
        #expect(r.failure == nil && r.finished && r.body == Self.body)
    }

    @Test func decodesWhenSplitAtEveryByteBoundary() {
        let s = Self.stream
        for cut in 0...s.count {
            let r = decodeChunked([Array(s[..<cut]), Array(s[cut...])])
            #expect(r.failure == nil && r.body == Self.body, "cut at \(cut): \(String(describing: r.failure))")
        }
        for first in 0...s.count {
            for second in first...s.count where (second - first) % 7 == 0 {
                let r = decodeChunked([Array(s[..<first]), Array(s[first..<second]), Array(s[second...])])
                #expect(r.failure == nil && r.body == Self.body, "cuts at \(first), \(second)")
            }
        }
        #expect(decodeChunked(s.map { [$0] }).body == Self.body)
    }

    @Test func bodyRangesPointIntoTheInputWithoutCopies() throws {
        var d = ChunkedDecoder()
        let input = Array("4\r\nabcd\r\n".utf8)
        let ranges = try input.withUnsafeBytes { p in try d.feed(p) }
        #expect(ranges == [3..<7])
        #expect(d.total == 4 && !d.isFinished)
    }

    @Test func everyTruncationSaysWhereTheStreamStopped() {
        let s = Self.stream
        for cut in 0..<s.count {
            let r = decodeChunked([Array(s[..<cut])])
            #expect(r.failure != nil && !r.finished, "cut at \(cut) was accepted")
        }
        let cases: [(String, ChunkedDecoder.Failure)] = [
            ("", .truncatedBeforeSize), ("5", .truncatedBeforeSize), ("5\r", .truncatedBeforeSize),
            ("5\r\nhel", .truncatedInChunk), ("5\r\nhello", .truncatedAfterChunk), ("5\r\nhello\r", .truncatedAfterChunk),
            ("5\r\nhello\r\n", .truncatedBeforeSize), ("0\r\n", .truncatedInTrailers), ("0\r\nX: y\r\n", .truncatedInTrailers),
        ]
        for (text, failure) in cases {
            #expect(decodeChunked([Array(text.utf8)]).failure == failure, "\(text.debugDescription)")
        }
        #expect(ChunkedDecoder.Failure.truncatedInChunk.description == "truncated: a chunk ended early")
    }

    @Test func badSizeLinesAreRefusedWithTheLine() {
        for line in ["-10", "ffffffffffffffffffff", "8000000000000000", "+5", "0x10", "", " ", "5 5", "g"] {
            let r = decodeChunked([Array("\(line)\r\nxx".utf8)])
            #expect(r.failure == .badSize(line), "\(line.debugDescription): \(String(describing: r.failure))")
        }
        // 16 hex digits that fit 63 bits are a size (here, over the limit)
        #expect(decodeChunked([Array("7fffffffffffffff\r\nx".utf8)], limit: 1 << 20).failure == .tooLarge(Int64.max))
        // spaces and tabs around the digits, extensions after them
        #expect(decodeChunked([Array(" 3\t;a=b;c\r\nabc\r\n0\r\n\r\n".utf8)]).body == Array("abc".utf8))
        #expect(ChunkedDecoder.Failure.badSize("-10").description == "bad chunked encoding: chunk size '-10'")
    }

    @Test func lineEndingsMustBeCRLF() {
        #expect(decodeChunked([Array("3\nabc\r\n0\r\n\r\n".utf8)]).failure == .badSize("3"))
        #expect(decodeChunked([Array("3\r\nabcX\r\n".utf8)]).failure == .missingCRLF)
        #expect(decodeChunked([Array("3\r\nabc\rX".utf8)]).failure == .missingCRLF)
        #expect(decodeChunked([Array("3\rX".utf8)]).failure == .badSize("3\rX"))
        #expect(decodeChunked([Array("0\r\nX: y\n\r\n".utf8)]).failure == .badTrailer)
        #expect(decodeChunked([Array("0\r\n\rX".utf8)]).failure == .badTrailer)
    }

    @Test func linesAndTrailersAreBounded() {
        let longest = "1;" + String(repeating: "e", count: ChunkedDecoder.maxLine - 2)
        #expect(decodeChunked([Array("\(longest)\r\nx\r\n0\r\n\r\n".utf8)]).body == Array("x".utf8))
        #expect(decodeChunked([Array("\(longest)e\r\nx".utf8)]).failure == .lineTooLong)
        // an endless size line fails once it is too long, not when it ends
        #expect(decodeChunked([Array("1".utf8) + [UInt8](repeating: 0x30, count: 100_000)]).failure == .lineTooLong)
        let longTrailer = "X: " + String(repeating: "t", count: ChunkedDecoder.maxLine)
        #expect(decodeChunked([Array("0\r\n\(longTrailer)\r\n\r\n".utf8)]).failure == .lineTooLong)
        let manyTrailers = String(repeating: "X: " + String(repeating: "t", count: 1000) + "\r\n", count: 20)
        #expect(decodeChunked([Array("0\r\n\(manyTrailers)\r\n".utf8)]).failure == .badTrailer)
    }

    @Test func chunkSizesAreBoundedByWhatRemainsOfTheLimit() {
        // each chunk fits, the sum does not: refused at the chunk that crosses
        let first = Array("4\r\nabcd\r\n4\r\nefgh\r\n".utf8), rest = Array("3\r\nijk\r\n0\r\n\r\n".utf8)
        let r = decodeChunked([first, rest], limit: 10)
        #expect(r.failure == .tooLarge(3) && r.body == Array("abcdefgh".utf8))
        #expect(decodeChunked([first + rest], limit: 11).body == Array("abcdefghijk".utf8))
    }

    @Test func bytesAfterTheEndAreIgnored() throws {
        var d = ChunkedDecoder()
        let slices = try d.feed(Array("1\r\nx\r\n0\r\n\r\ngarbage".utf8))
        #expect(slices.flatMap { $0 } == Array("x".utf8) && d.isFinished && d.excess == 7)
        #expect(try d.feed(Array("more".utf8)).isEmpty && d.excess == 11)
    }
}

@Suite struct HTTPResponseHeadTests {
    func parse(_ s: String) throws(NetError) -> HTTPResponseHead { try HTTPResponseHead.parse(Array(s.utf8)) }

    @Test func parsesStatusAndHeaders() throws {
        let h = try parse("HTTP/1.1 302 Found\r\nLocation:  /next \t\r\ncontent-length: 0\r\nX-Two: a\r\nx-two: b")
        #expect(h.status == 302 && h.reason == "Found")
        #expect(h.header("LOCATION") == "/next" && h.header("Content-Length") == "0")
        #expect(h.values("X-TWO") == ["a", "b"])
        #expect(try parse("HTTP/1.0 200").status == 200)
        #expect(try parse("HTTP/1.1 404 Not Found Here").reason == "Not Found Here")
    }

    @Test func refusesWhatIsNotHTTP() {
        for line in ["", "HTTP/2 200 OK", "ICY 200 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 abc OK", "HTTP/1.1 099 Low", "SSH-2.0-OpenSSH",
                     "HTTP/1.1  200 OK"] {
            #expect(throws: NetError.badStatusLine(line)) { try parse(line + "\r\nA: b") }
        }
        #expect(NetError.badStatusLine("SSH-2.0\u{1}x").description == "not an HTTP answer: 'SSH-2.0?x'")
        for bad in ["HTTP/1.1 200 OK\r\nno colon", "HTTP/1.1 200 OK\r\nA: b\r\n folded", "HTTP/1.1 200 OK\r\n: empty",
                    "HTTP/1.1 200 OK\r\nBad Name: x", "HTTP/1.1 200 OK\r\n\r\nA: b"] {
            #expect(throws: NetError.malformedHead, "\(bad.debugDescription)") { try parse(bad) }
        }
    }

    @Test func findsTheEndOfAHeadWherePiecesSplitIt() {
        let text = Array("HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody\r\n\r\n".utf8)
        let end = 21
        text.withUnsafeBytes { p in
            #expect(HTTPResponseHead.end(in: p) == end)
            // searched again from wherever the last search stopped
            for from in 0...end { #expect(HTTPResponseHead.end(in: p, from: from) == end, "from \(from)") }
            for cut in 0..<end + 4 { #expect(HTTPResponseHead.end(in: UnsafeRawBufferPointer(rebasing: p[..<cut])) == nil) }
        }
        for s in ["\r\r\n\r\n", "x\r\n\r\r\n\r\n", "\n\r\n\r\n"] {
            let b = Array(s.utf8)
            b.withUnsafeBytes { #expect(HTTPResponseHead.end(in: $0) == b.count - 4, "\(s.debugDescription)") }
        }
        Array("a\n\nb\r\n\nc\n\r\n".utf8).withUnsafeBytes { #expect(HTTPResponseHead.end(in: $0) == nil) }
    }

    @Test func framingFollowsRFC9112() throws {
        func framing(_ headers: [(String, String)], status: Int = 200, method: String = "GET") throws(NetError) -> HTTPResponseHead.Framing {
            try HTTPResponseHead(status: status, headers: headers.map { HTTPField($0.0, $0.1) }).framing(requestMethod: method)
        }
        #expect(try framing([("Content-Length", "42")]) == .length(42))
        #expect(try framing([("Content-Length", "42"), ("content-length", "42")]) == .length(42))
        #expect(try framing([("Content-Length", "42, 42")]) == .length(42))
        #expect(try framing([("Transfer-Encoding", "chunked"), ("Content-Length", "42")]) == .chunked)
        #expect(try framing([("Transfer-Encoding", "gzip, Chunked")]) == .chunked)
        #expect(try framing([("Transfer-Encoding", "chunked, gzip")]) == .untilClose)
        #expect(try framing([]) == .untilClose)
        #expect(try framing([("Content-Length", "42")], method: "HEAD") == HTTPResponseHead.Framing.none)
        #expect(try framing([("Content-Length", "42")], status: 204) == HTTPResponseHead.Framing.none)
        #expect(try framing([("Content-Length", "42")], status: 304) == HTTPResponseHead.Framing.none)
        for bad in ["-5", "+5", "", "4 2", "0x10", "1234567890123456789", "42, 43"] {
            #expect(throws: NetError.self, "\(bad.debugDescription)") { try framing([("Content-Length", bad)]) }
        }
        #expect(throws: NetError.badContentLength("42, 43")) { try framing([("Content-Length", "42"), ("Content-Length", "43")]) }
        #expect(NetError.badContentLength("-5").description == "bad Content-Length '-5'")
    }

    @Test func requestsCarryHostAndLengthAndRefuseLineBreaks() throws {
        let url = try HTTPURL(parsing: "http://[::1]:8080/a?b=c")
        let head = String(decoding: try HTTPRequest("POST", url, headers: [HTTPField("X-A", "1")], body: Array("{}".utf8))
            .encodedHead(userAgent: "t"), as: UTF8.self)
        #expect(head == "POST /a?b=c HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: t\r\nX-A: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
        let get = String(decoding: try HTTPRequest("GET", HTTPURL(parsing: "https://example.test")).encodedHead(userAgent: "t"), as: UTF8.self)
        #expect(get.hasPrefix("GET / HTTP/1.1\r\nHost: example.test\r\n") && !get.contains("Content-Length"))
        #expect(throws: NetError.badRequestHeader("Authorization")) {
            try HTTPRequest("GET", url, headers: [HTTPField("Authorization", "Bearer x\r\nX-Evil: 1")]).encodedHead(userAgent: "t")
        }
    }
}

@Suite struct HTTPURLTests {
    @Test func parsesWhatTheClientsUse() throws {
        let u = try HTTPURL(parsing: "HTTPS://Example.test:8443/a/b?x=1#frag")
        #expect(u.tls && u.host == "Example.test" && u.port == 8443 && u.target == "/a/b?x=1")
        #expect(u.hostHeader == "Example.test:8443" && u.origin == "https://Example.test:8443")
        #expect(try HTTPURL(parsing: "http://h").target == "/")
        #expect(try HTTPURL(parsing: "http://h?q").target == "/?q")
        #expect(try HTTPURL(parsing: "http://h").port == 80 && HTTPURL(parsing: "https://h/").port == 443)
        #expect(try HTTPURL(parsing: "https://h:443/").hostHeader == "h")
        let v6 = try HTTPURL(parsing: "http://[::1]:9/")
        #expect(v6.host == "::1" && v6.port == 9 && v6.origin == "http://[::1]:9")
        #expect(try HTTPURL(parsing: "http://10.0.2.2:8000/c.yaml").description == "http://10.0.2.2:8000/c.yaml")
    }

    @Test func refusesWhatItCannotUse() {
        let cases: [(String, HTTPURL.Problem)] = [
            ("ftp://h/x", .scheme), ("file:///etc/passwd", .scheme), ("h/x", .scheme), ("https//h", .scheme),
            ("https://:443/", .host), ("http:///x", .host), ("http://user@h/", .host), ("http://h:0/", .host),
            ("http://h:65536/", .host), ("http://h:x/", .host), ("http://h:/", .host), ("http://[::1/", .host),
            ("http://[zz]/", .host), ("http://h h/", .host), ("http://a:1:2/", .host),
            ("https://h/a b", .path), ("http://h/\u{7f}", .path), ("http://h/é", .path),
        ]
        for (text, problem) in cases {
            #expect(throws: NetError.badURL(problem), "\(text)") { try HTTPURL(parsing: text) }
        }
    }

    @Test func redirectsResolveAgainstTheURLTheyCameFrom() throws {
        let base = try HTTPURL(parsing: "https://h:8443/dir/file?q=1")
        func to(_ location: String) throws(NetError) -> String { try base.resolving(location).description }
        #expect(try to("http://other/x") == "http://other/x")
        #expect(try to("HTTPS://other:444/y?z") == "https://other:444/y?z")
        #expect(try to("//cdn.test/img") == "https://cdn.test/img")
        #expect(try to("/abs?x=1#f") == "https://h:8443/abs?x=1")
        #expect(try to("next") == "https://h:8443/dir/next")
        #expect(try to("./a/../b") == "https://h:8443/dir/b")
        #expect(try to("../../../up") == "https://h:8443/up")
        #expect(try to("sub/") == "https://h:8443/dir/sub/")
        #expect(try to("?other") == "https://h:8443/dir/file?other")
        #expect(try to("#frag") == "https://h:8443/dir/file?q=1")
        #expect(try to("a/b:c") == "https://h:8443/dir/a/b:c")
        for bad in ["", "ftp://h/x", "mailto:a@b", "javascript:alert(1)", "/a b", "/\r\nX: y", "http://", "//"] {
            #expect(throws: NetError.badRedirect(bad), "\(bad.debugDescription)") { try base.resolving(bad) }
        }
        #expect(HTTPURL.removingDotSegments("/a/./b/../../c/.") == "/c/")
    }
}
