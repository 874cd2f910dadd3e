import StreamCodec
import TestThreads
import Testing

@Suite(.ownThreads) struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func knownVectors(_ input: String, _ digest: String) {
        var h = SHA256()
        h.update(Array(input.utf8))
        #expect(h.hexDigest() == digest)
    }

    @Test func incrementalEqualsOneShot() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var whole = SHA256()
        whole.update(data)
        var parts = SHA256()
        var i = 0
        for size in [1, 63, 64, 65, 1000, 3] + Array(repeating: 997, count: 20) where i < data.count {
            parts.update(data[i..<min(i + size, data.count)])
            i += size
        }
        #expect(parts.hexDigest() == whole.hexDigest())
    }
}

@Suite(.ownThreads) struct GzipTests {
    @Test func roundTripInPiecesWithFlushes() throws {
        let text = Array(String(repeating: "email,name\r\nana@example.com,Ana Ümit\r\n", count: 5_000).utf8)
        let gz = try GzipCompressor(level: 1)
        var compressed: [UInt8] = []
        for start in stride(from: 0, to: text.count, by: 7_000) {
            compressed += try gz.flush(Array(text[start..<min(start + 7_000, text.count)]))
        }
        compressed += try gz.finish()
        #expect(compressed.count < text.count / 10)
        #expect(compressed.prefix(2) == [0x1f, 0x8b])
        let gunzip = try GzipDecompressor()
        var out: [UInt8] = []
        for start in stride(from: 0, to: compressed.count, by: 333) {
            out += try gunzip.decompress(Array(compressed[start..<min(start + 333, compressed.count)]))
        }
        #expect(out == text)
        #expect(gunzip.isFinished)
    }

    @Test func corruptDataIsAnError() throws {
        let gz = try GzipCompressor()
        var data = try gz.compress(Array("hello hello hello".utf8)) + (try gz.finish())
        data[data.count / 2] ^= 0xff
        data[data.count - 6] ^= 0xff
        #expect(throws: GzipError.self) { _ = try GzipDecompressor().decompress(data) }
    }
}

@Suite(.ownThreads) struct CSVTests {
    @Test func quotingFollowsRFC4180() {
        var out: [UInt8] = []
        CSV.appendRecord(["plain", "a,b", "say \"hi\"", "two\nlines", " padded", "Jakarta Selatan", "üñï"], to: &out)
        #expect(String(decoding: out, as: UTF8.self) == "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\" padded\",Jakarta Selatan,üñï\r\n")
    }

    @Test func readerParsesWhatTheWriterWritesAcrossChunks() {
        let records = [["email", "name", "note"], ["a@x.com", "A, \"B\"", "line1\r\nline2"], ["b@x.com", "", "ünï"]]
        var bytes: [UInt8] = []
        for r in records { CSV.appendRecord(r, to: &bytes) }
        var reader = CSV.Reader()
        var got: [(line: Int, fields: [String])] = []
        for start in stride(from: 0, to: bytes.count, by: 5) {
            got += reader.feed(bytes[start..<min(start + 5, bytes.count)])
        }
        got += reader.finish()
        #expect(got.map(\.fields) == [["email", "name", "note"], ["a@x.com", "A, \"B\"", "line1\r\nline2"], ["b@x.com", "", "ünï"]])
        #expect(got.map(\.line) == [1, 2, 4])
    }

    @Test func lastRecordWithoutNewlineAndBlankLines() {
        var reader = CSV.Reader()
        var got = reader.feed(Array("a,b\n\nc,d".utf8))
        got += reader.finish()
        #expect(got.map(\.fields) == [["a", "b"], ["c", "d"]])
        #expect(got.map(\.line) == [1, 3])
    }
}
