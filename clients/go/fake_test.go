package segmentd

// Protocol edge cases against a scripted fake server (no segmentd binary needed): what
// a real server does not do on demand, such as a truncated gzip stream.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeServer answers rpc.hello on each connection, then hands the connection to script
// with the first request after the hello.
func fakeServer(t *testing.T, script func(conn net.Conn, r *bufio.Reader, req map[string]any)) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sdfake")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "f.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); os.RemoveAll(dir) })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					var req map[string]any
					if json.Unmarshal(line, &req) != nil {
						return
					}
					if req["method"] == "rpc.hello" {
						fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"server":"fake","protocol":"1","transport":"unix","connection":1,"limits":{"max_in_flight":4,"max_line_bytes":4096,"idle_timeout_ms":300000}}}`+"\n", req["id"])
						continue
					}
					script(conn, r, req)
					return
				}
			}()
		}
	}()
	return sock
}

func gzipBytes(text string) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, 1)
	w.Write([]byte(text))
	w.Close()
	return b.Bytes()
}

func rowsLine(id any, chunk []byte) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","method":"segments.rows","params":{"id":%v,"gzip":%q}}`+"\n", id, base64.StdEncoding.EncodeToString(chunk))
}

func finalLine(id any, rows int) string {
	return fmt.Sprintf(`{"id":%v,"jsonrpc":"2.0","result":{"rows":%d,"as_of":"2026-01-15T12:00:00Z","version":1,"format":"csv","columns":["email"],"compress":"gzip","complete":true}}`+"\n", id, rows)
}

func TestFakeStreamEdgeCases(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	text := "email\r\na@example.com\r\nb@example.com\r\n"
	full := gzipBytes(text)
	cases := []struct {
		name   string
		send   func(id any) string
		check  func(err error) bool
		rows   int
		expect string
	}{
		{"whole", func(id any) string { return rowsLine(id, full[:10]) + rowsLine(id, full[10:]) + finalLine(id, 2) },
			func(err error) bool { return err == nil }, 3, "no error"},
		{"truncated gzip", func(id any) string { return rowsLine(id, full[:len(full)-6]) + finalLine(id, 2) },
			func(err error) bool {
				return errors.Is(err, io.ErrUnexpectedEOF) && strings.Contains(err.Error(), "gzip")
			}, -1, "a gzip error"},
		{"corrupt gzip", func(id any) string {
			bad := append([]byte{}, full...)
			bad[len(bad)-5] ^= 0xff // the CRC-32 or length
			return rowsLine(id, bad) + finalLine(id, 2)
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "gzip") }, -1, "a gzip error"},
		{"error reply mid-stream", func(id any) string {
			return rowsLine(id, full[:12]) + fmt.Sprintf(`{"id":%v,"jsonrpc":"2.0","error":{"code":-32603,"message":"boom","data":{"type":"internal"}}}`+"\n", id)
		}, func(err error) bool { var e *Error; return errors.As(err, &e) && e.Code == CodeInternal }, -1, "the *Error"},
		{"connection closed mid-stream", func(id any) string { return rowsLine(id, full[:12]) },
			func(err error) bool { return errors.Is(err, ErrConnLost) }, -1, "a *ConnError"},
		{"row count mismatch", func(id any) string { return rowsLine(id, full) + finalLine(id, 5) },
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "final reply says 5") }, 3, "a count error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sock := fakeServer(t, func(conn net.Conn, r *bufio.Reader, req map[string]any) {
				io.WriteString(conn, tc.send(req["id"]))
				time.Sleep(50 * time.Millisecond)
			})
			c, err := Dial(ctx, "unix:"+sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.Resolve(ctx, StreamParams{ID: 1, Format: "csv", Compress: "gzip"})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for s.Next() {
				n++
			}
			if !tc.check(s.Err()) || (tc.rows >= 0 && n != tc.rows) {
				t.Fatalf("%d rows, Err() = %v; want %s", n, s.Err(), tc.expect)
			}
			if ctx.Err() != nil {
				t.Fatal("hung until the test's deadline")
			}
		})
	}
}

func TestFakeCallEdgeCases(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	sock := fakeServer(t, func(conn net.Conn, r *bufio.Reader, req map[string]any) {
		switch req["method"] {
		case "die": // the connection ends with the call pending
			return
		case "late":
			time.Sleep(100 * time.Millisecond)
			fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"ok":true}}`+"\n", req["id"])
		}
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(ctx, "die", nil, nil); !errors.Is(err, ErrConnLost) {
		t.Fatalf("pending call on a dropped connection: %v", err)
	}
	var r struct{ OK bool }
	if err := c.Call(ctx, "late", nil, &r); err != nil || !r.OK { // a new connection is dialled
		t.Fatalf("after the drop: %v %+v", err, r)
	}
	// A request longer than max_line_bytes (4096 here) is refused before it is sent.
	err = c.Call(ctx, "late", map[string]string{"x": strings.Repeat("y", 5000)}, nil)
	if e := asError(t, err); e.Code != CodeTooLarge {
		t.Fatalf("too large: %v", err)
	}
	big := []Filter{{"dimension": "label", "op": "contains_any", "value": strings.Split(strings.Repeat("label,", 1000), ",")}}
	if _, err := c.Resolve(ctx, StreamParams{Filters: big}); !errors.Is(err, &Error{Code: CodeTooLarge}) {
		t.Fatalf("too large stream request: %v", err)
	}
	if err := c.Call(ctx, "late", []int{1}, nil); err == nil || !strings.Contains(err.Error(), "object") {
		t.Fatalf("positional params: %v", err)
	}
	c.Close()
	if err := c.Call(ctx, "late", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestBackoffIsBoundedWithJitter(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	b := Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Jitter: 0.5}
	for n := 1; n <= 100; n++ {
		want := 2 * time.Second
		if n <= 5 {
			want = 100 * time.Millisecond << uint(n-1)
		}
		d := b.delay(n, rnd)
		if d > want || d < want/2 {
			t.Fatalf("failure %d: %v, want in [%v, %v]", n, d, want/2, want)
		}
	}
	if d := (Backoff{Jitter: -1}).delay(1000, rnd); d != 5*time.Second {
		t.Fatalf("default max without jitter: %v", d)
	}
}

func TestAddressesAndBooks(t *testing.T) {
	for in, want := range map[string]string{
		"unix:/tmp/s.sock": "unix /tmp/s.sock", "unix:///tmp/s.sock": "unix /tmp/s.sock", "./segmentd.sock": "unix ./segmentd.sock",
		"tcp:127.0.0.1:7070": "tcp 127.0.0.1:7070", "tcp://[::1]:7070": "tcp [::1]:7070", "localhost:7070": "tcp localhost:7070",
	} {
		n, a, err := parseAddress(in)
		if err != nil || n+" "+a != want {
			t.Errorf("%s: %s %s %v, want %s", in, n, a, err, want)
		}
	}
	if _, _, err := parseAddress("tcp:nohost"); err == nil {
		t.Error("tcp:nohost accepted")
	}
	c := &Client{cfg: &config{book: "acme"}}
	for _, tc := range []struct {
		method, explicit string
		opts             []CallOption
		want             string
	}{
		{"contacts.count", "", nil, "acme"},
		{"books.list", "", nil, ""},
		{"rpc.ping", "", nil, ""},
		{"server.stats", "", nil, ""},
		{"contacts.count", "", []CallOption{Book("other")}, "other"},
		{"segments.resolve", "given", nil, "given"},
	} {
		if got, _ := c.bookFor(tc.method, tc.explicit, tc.opts); got != tc.want {
			t.Errorf("%s: book %q, want %q", tc.method, got, tc.want)
		}
	}
	raw, err := marshalParams(map[string]any{"id": 1}, "acme", false)
	if err != nil || string(raw) != `{"book":"acme","id":1}` {
		t.Errorf("marshalParams: %s %v", raw, err)
	}
	if _, err := marshalParams(map[string]any{"book": "x"}, "acme", false); err == nil {
		t.Error("conflicting books accepted")
	}
	// The client's default book gives way to a book named in the params.
	if raw, err := marshalParams(map[string]any{"book": "x"}, "acme", true); err != nil || string(raw) != `{"book":"x"}` {
		t.Errorf("default book over params: %s %v", raw, err)
	}
}
