import PostgresStore
import SegmentCore
import TestThreads
import Testing

@Suite(.ownThreads) struct PostgresURLTests {
    @Test func tcpURLWithEveryPart() throws {
        let url = try PostgresURL("postgres://alice:s3cret@db.example:6543/segments")
        #expect(url == PostgresURL(user: "alice", password: "s3cret", database: "segments", endpoint: .tcp(host: "db.example", port: 6543)))
        #expect(url.description == "postgres://alice:***@db.example:6543/segments")
        #expect(url.socketPath == nil)
    }

    @Test func postgresqlSchemeDefaultPortNoPassword() throws {
        let url = try PostgresURL("postgresql://bob@localhost/app")
        #expect(url == PostgresURL(user: "bob", database: "app", endpoint: .tcp(host: "localhost", port: 5432)))
        #expect(url.description == "postgres://bob@localhost/app")
    }

    @Test func unixSocketDirectoryInQueryOrPercentEncodedHost() throws {
        let query = try PostgresURL("postgres://postgres@/segmentd?host=/tmp/pg")
        #expect(query.endpoint == .unixSocket(directory: "/tmp/pg", port: 5432))
        #expect(query.socketPath == "/tmp/pg/.s.PGSQL.5432")
        #expect(query.description == "postgres://postgres@/segmentd?host=/tmp/pg")
        #expect(try PostgresURL(query.description) == query)

        let encoded = try PostgresURL("postgres://u@%2Fvar%2Frun%2Fpostgresql:5433/db")
        #expect(encoded.endpoint == .unixSocket(directory: "/var/run/postgresql", port: 5433))
        #expect(encoded.socketPath == "/var/run/postgresql/.s.PGSQL.5433")
        #expect(try PostgresURL(encoded.description) == encoded)
    }

    @Test func percentDecodingIPv6AndQueryOverrides() throws {
        let url = try PostgresURL("postgres://u:p%40ss%3Aword@[::1]:5433/my%20db?sslmode=disable")
        #expect(url == PostgresURL(user: "u", password: "p@ss:word", database: "my db", endpoint: .tcp(host: "::1", port: 5433)))
        #expect(url.description == "postgres://u:***@[::1]:5433/my%20db")

        let overridden = try PostgresURL("postgres://u@h/db?port=6000&dbname=other&user=v&password=x")
        #expect(overridden == PostgresURL(user: "v", password: "x", database: "other", endpoint: .tcp(host: "h", port: 6000)))
    }

    @Test(arguments: [
        ("mysql://u@h/db", "must start with postgres:// or postgresql://"),
        ("postgres://u@h", "no database name"),
        ("postgres://u@h/", "no database name"),
        ("postgres://@h/db", "no user name"),
        ("postgres://h/db", "no user name"),
        ("postgres://u@/db", "no host"),
        ("postgres://u@h:99999/db", "port \"99999\" is not a number from 1 to 65535"),
        ("postgres://u@h:abc/db", "port \"abc\""),
        ("postgres://u@h/db?sslmode=require", "sslmode=require is not supported"),
        ("postgres://u@h/db?foo=1", "unknown query parameter \"foo\""),
        ("postgres://u@[::1/db", "lacks its closing ]"),
        ("postgres://u:hunter2@h/d%zzb", "bad percent-encoding in the database name"),
        ("postgres://u@h/db#frag", "fragment"),
    ])
    func errorsNameWhatIsWrong(input: String, expected: String) throws {
        let error = try #require(throws: SegmentError.self) { try PostgresURL(input) }
        #expect(error.kind == .invalidParams)
        #expect(error.message.hasPrefix("PostgreSQL URL: "))
        #expect(error.message.contains(expected), "\(error.message)")
    }

    @Test func errorsNeverShowThePassword() throws {
        for input in ["postgres://u:hunter2@h:x/db", "postgres://u:hunter2%zz@h/db", "postgres://u:hunter2@h", "mysql://u:hunter2@h/db"] {
            let error = try #require(throws: SegmentError.self) { try PostgresURL(input) }
            #expect(!error.message.contains("hunter2"), "\(error.message)")
        }
    }
}

@Suite(.ownThreads) struct PGSQLTests {
    @Test func questionMarksBecomeNumberedParametersOutsideLiterals() {
        let sql = """
            SELECT ? AS "what?", '?' AS q, 'it''s ?' AS r, E'\\' ?' AS e, $$ ? $$ AS d, $tag$ ?$x$ $tag$ AS t, ? /* ? /* ? */ ? */ -- ?
            FROM t WHERE a$b = ? AND c = $1
            """
        let expected = """
            SELECT $1 AS "what?", '?' AS q, 'it''s ?' AS r, E'\\' ?' AS e, $$ ? $$ AS d, $tag$ ?$x$ $tag$ AS t, $2 /* ? /* ? */ ? */ -- ?
            FROM t WHERE a$b = $3 AND c = $1
            """
        #expect(PGSQL.statements(sql) == [PGSQL.Statement(sql: expected, parameterCount: 3)])
    }

    @Test func splitsAtTopLevelSemicolonsAndNumbersEachStatement() {
        let sql = "CREATE TABLE t(x int8, s text DEFAULT ';'); INSERT INTO t VALUES (?, ?);\n ; -- done; really\n/* ; */ SELECT ?;"
        #expect(PGSQL.statements(sql) == [
            PGSQL.Statement(sql: "CREATE TABLE t(x int8, s text DEFAULT ';')", parameterCount: 0),
            PGSQL.Statement(sql: "INSERT INTO t VALUES ($1, $2)", parameterCount: 2),
            PGSQL.Statement(sql: "-- done; really\n/* ; */ SELECT $1", parameterCount: 1),
        ])
        #expect(PGSQL.statements(" ;\n-- nothing\n; /* */ ").isEmpty)
    }

    @Test func dollarQuotedBodiesKeepTheirSemicolonsAndQuestionMarks() {
        let sql = "CREATE FUNCTION f() RETURNS int8 LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END; $body$; SELECT f(), ?"
        #expect(PGSQL.statements(sql).map(\.parameterCount) == [0, 1])
        #expect(PGSQL.statements(sql)[0].sql.hasSuffix("END; $body$"))
    }

    @Test func unterminatedLiteralRunsToTheEnd() {
        #expect(PGSQL.statements("SELECT 'a; ?") == [PGSQL.Statement(sql: "SELECT 'a; ?", parameterCount: 0)])
    }
}
