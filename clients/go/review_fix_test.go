package segmentd

// Regression tests for the review's findings (see each test).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const nullReplyLine = `{"error":{"code":-32700,"data":{"type":"parse_error"},"message":"invalid JSON"},"id":null,"jsonrpc":"2.0"}` + "\n"

func isNullReplyErr(err error) bool {
	var e *Error
	return errors.Is(err, ErrConnLost) && errors.As(err, &e) && e.Code == CodeParseError
}

// A reply with id null fails the connection's calls at once (it used to be stored and the
// calls waited forever, each holding an in-flight slot).
func TestNullIDReplyFailsTheCalls(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	sock := fakeServer(t, func(conn net.Conn, r *bufio.Reader, req map[string]any) {
		switch req["method"] {
		case "null":
			io.WriteString(conn, nullReplyLine)
			io.Copy(io.Discard, r) // keep the connection open
		case "ok":
			fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"ok":true}}`+"\n", req["id"])
		}
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.Call(callCtx, "null", nil, nil); !isNullReplyErr(err) {
		t.Fatalf("call answered with id null: %v, want a *ConnError wrapping the -32700 *Error", err)
	}
	var r struct{ OK bool }
	if err := c.Call(ctx, "ok", nil, &r); err != nil || !r.OK {
		t.Fatalf("the next call: %v %+v", err, r)
	}
}

func TestNullIDReplyEndsStreamsAndAttempts(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	sock := fakeServer(t, func(conn net.Conn, r *bufio.Reader, req map[string]any) {
		switch req["method"] {
		case "segments.resolve":
			fmt.Fprintf(conn, `{"jsonrpc":"2.0","method":"segments.rows","params":{"id":%v,"rows":[{"email":"a@example.com"}]}}`+"\n", req["id"])
		}
		io.WriteString(conn, nullReplyLine)
		io.Copy(io.Discard, r)
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := c.Resolve(sctx, StreamParams{ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for s.Next() {
		n++
	}
	if n != 1 || !isNullReplyErr(s.Err()) {
		t.Fatalf("stream: %d rows, Err() = %v; want 1 row and a *ConnError wrapping the -32700 *Error", n, s.Err())
	}

	resumed := make(chan error, 10)
	sub, err := c.Subscribe(sctx, SubscribeOptions{After: 0, Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond}, OnResume: func(ri ResumeInfo) {
		select {
		case resumed <- ri.Err:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); sub.Next() }()
	select {
	case err := <-resumed:
		if !isNullReplyErr(err) {
			t.Errorf("subscription attempt ended with %v, want a *ConnError wrapping the -32700 *Error", err)
		}
	case <-sctx.Done():
		t.Error("a subscription attempt answered with id null never ended")
	}
	sub.Close()
	<-done

	// Newest reads the newest cursor first (roundTrip): id null ends that too.
	sub, err = c.Subscribe(sctx, SubscribeOptions{After: Newest, Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond}, OnResume: func(ri ResumeInfo) {
		select {
		case resumed <- ri.Err:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { defer close(done); sub.Next() }()
	select {
	case err := <-resumed:
		if !isNullReplyErr(err) {
			t.Errorf("newest-cursor read ended with %v, want a *ConnError wrapping the -32700 *Error", err)
		}
	case <-sctx.Done():
		t.Error("an events.read answered with id null never ended")
	}
	sub.Close()
	<-done
}

// Raw params are checked and compacted: a MarshalIndent line break would split the
// request line (the server answers each part with id null).
func TestRawParamsAreCompacted(t *testing.T) {
	pretty, _ := json.MarshalIndent(map[string]any{"filters": []any{}, "x": "a b"}, "", "  ")
	for _, p := range []any{json.RawMessage(pretty), pretty} {
		raw, err := marshalParams(p, "", false)
		if err != nil || string(raw) != `{"filters":[],"x":"a b"}` {
			t.Errorf("%T: %s %v", p, raw, err)
		}
		raw, err = marshalParams(p, "acme", false)
		if err != nil || strings.Contains(string(raw), "\n") || !strings.Contains(string(raw), `"book":"acme"`) {
			t.Errorf("%T with a book: %s %v", p, raw, err)
		}
	}
	for _, bad := range []string{`{"a":`, `{"a":1}{"b":2}`, "{\"a\":\"x\ny\"}"} {
		if raw, err := marshalParams(json.RawMessage(bad), "", false); err == nil {
			t.Errorf("invalid raw params %q accepted: %s", bad, raw)
		}
	}
	if raw, err := marshalParams(json.RawMessage("  "), "", false); err != nil || string(raw) != "{}" {
		t.Errorf("blank raw params: %s %v", raw, err)
	}
}

// lineServer is a fake server for the mux connection tests: it answers rpc.hello with
// roomy limits and hands every other request (decoded) to handle, in order, from the
// goroutine reading that connection.
func lineServer(t *testing.T, handle func(conn net.Conn, req map[string]any)) string {
	t.Helper()
	return lineServerLimits(t, `{"max_in_flight":8,"max_line_bytes":16777216,"idle_timeout_ms":300000,"line_timeout_ms":10000}`, handle)
}

func lineServerLimits(t *testing.T, limits string, handle func(conn net.Conn, req map[string]any)) string {
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
				r := bufio.NewReaderSize(conn, 1<<20)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					var req map[string]any
					if err := json.Unmarshal(line, &req); err != nil {
						io.WriteString(conn, nullReplyLine)
						continue
					}
					if req["method"] == "rpc.hello" {
						fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"server":"fake","protocol":"1","transport":"unix","connection":1,"limits":%s}}`+"\n", req["id"], limits)
						continue
					}
					handle(conn, req)
				}
			}()
		}
	}()
	return sock
}

func replyOK(conn net.Conn, req map[string]any) {
	fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"ok":true}}`+"\n", req["id"])
}

// Cancelling a call while its (long) line is being written finishes the line and sends
// rpc.cancel: the other calls on the connection go on (the connection used to be failed).
func TestCancelMidWriteKeepsTheConnection(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	var mu sync.Mutex
	var cancelled []any
	var bigID any
	sock := lineServer(t, func(conn net.Conn, req map[string]any) {
		switch req["method"] {
		case "stall": // stop reading for a while, so that the next line's write blocks
			time.Sleep(1500 * time.Millisecond)
			replyOK(conn, req)
		case "big":
			mu.Lock()
			bigID = req["id"]
			mu.Unlock()
		case "rpc.cancel":
			p, _ := req["params"].(map[string]any)
			mu.Lock()
			cancelled = append(cancelled, p["id"])
			mu.Unlock()
			fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","error":{"code":-32800,"message":"cancelled","data":{"type":"cancelled"}}}`+"\n", p["id"])
		default:
			replyOK(conn, req)
		}
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 3)
	go func() { errs <- c.Call(ctx, "stall", nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	go func() {
		// Well before the server reads again, well after the write began.
		bctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		err := c.Call(bctx, "big", map[string]string{"x": strings.Repeat("y", 4<<20)}, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("the cancelled call: %v, want context.DeadlineExceeded", err)
		} else {
			err = nil
		}
		errs <- err
	}()
	time.Sleep(300 * time.Millisecond)
	go func() { errs <- c.Call(ctx, "innocent", nil, nil) }()
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	waitFor(ctx, t, "rpc.cancel for the big call", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cancelled) == 1 && cancelled[0] == bigID
	})
	if err := c.Call(ctx, "after", nil, nil); err != nil {
		t.Fatalf("a call afterwards: %v", err)
	}
}

// A call whose context has already ended sends nothing (it used to be sent half the
// time: a select between a free slot and ctx.Done()).
func TestCancelledContextSendsNothing(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	var mu sync.Mutex
	seen := 0
	sock := lineServer(t, func(conn net.Conn, req map[string]any) {
		if req["method"] == "upsert" {
			mu.Lock()
			seen++
			mu.Unlock()
		}
		replyOK(conn, req)
	})
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dead, cancel := context.WithCancel(ctx)
	cancel()
	for i := 0; i < 100; i++ {
		if err := c.Call(dead, "upsert", nil, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want context.Canceled", i, err)
		}
	}
	if err := c.Call(ctx, "sync", nil, nil); err != nil { // replies come in order here
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != 0 {
		t.Fatalf("%d of 100 calls with a cancelled context were sent", seen)
	}
}

// Subscribe(After: Newest) starts from when Subscribe is called: events committed before
// the first Next are delivered (the newest cursor used to be read by the first Next).
func TestSubscribeNewestStartsAtSubscribe(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 30*time.Second)
	c := srv.client()
	vipSegment(ctx, t, c, []string{"enter"})
	vips := func(prefix string, n int) []map[string]any {
		var contacts []map[string]any
		for _, e := range emails(prefix, 0, n) {
			contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip"}})
		}
		return contacts
	}
	upsertRetrying(ctx, t, c, vips("before", 5)) // cursors 1-5
	sub, err := c.Subscribe(ctx, SubscribeOptions{After: Newest})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.Cursor() != 5 {
		t.Fatalf("Cursor() = %d after Subscribe, want 5", sub.Cursor())
	}
	upsertRetrying(ctx, t, c, vips("between", 3)) // cursors 6-8: before the first Next
	for want := int64(6); want <= 8; want++ {
		if !sub.Next() {
			t.Fatalf("Next: %v", sub.Err())
		}
		if ev := sub.Event(); ev.Cursor != want || !strings.HasPrefix(ev.Email, "between") {
			t.Fatalf("event %+v, want cursor %d", ev, want)
		}
	}
	if _, err := c.Subscribe(ctx, SubscribeOptions{After: Newest, Book: "no-such-book"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Newest on an unknown book: %v, want ErrNotFound from Subscribe", err)
	}
}

// Two different books for one stream (StreamParams.Book and the Book option) are refused
// before anything is sent, as for Call (the option used to win silently).
func TestStreamRefusesTwoBooks(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	var mu sync.Mutex
	var books []any
	sock := lineServer(t, func(conn net.Conn, req map[string]any) {
		p, _ := req["params"].(map[string]any)
		mu.Lock()
		books = append(books, p["book"])
		mu.Unlock()
		fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"rows":0,"as_of":"2026-01-15T12:00:00Z","version":1,"format":"ndjson","columns":["email"],"compress":"","complete":true}}`+"\n", req["id"])
	})
	c, err := Dial(ctx, "unix:"+sock, WithBook("dflt"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s, err := c.Resolve(ctx, StreamParams{ID: 1, Book: "a"}, Book("b")); err == nil {
		s.Close()
		t.Fatal("StreamParams{Book: a} with Book(b) accepted")
	}
	for _, tc := range []struct {
		p    StreamParams
		opts []CallOption
		want string
	}{
		{StreamParams{ID: 1, Book: "a"}, []CallOption{Book("a")}, "a"},
		{StreamParams{ID: 1, Book: "a"}, nil, "a"},
		{StreamParams{ID: 1}, []CallOption{Book("b")}, "b"},
		{StreamParams{ID: 1}, nil, "dflt"},
	} {
		s, err := c.Export(ctx, tc.p, tc.opts...)
		if err != nil {
			t.Fatalf("%+v: %v", tc.p, err)
		}
		for s.Next() {
		}
		if err := s.Err(); err != nil {
			t.Fatalf("%+v: %v", tc.p, err)
		}
		mu.Lock()
		got := books[len(books)-1]
		mu.Unlock()
		if got != tc.want {
			t.Errorf("%+v %d opts: book %v, want %s", tc.p, len(tc.opts), got, tc.want)
		}
	}
}

// Printing a Client or its config never shows the token (%+v of a Client used to print
// its config, token included; streams and subscriptions hold a *config).
func TestPrintingShowsNoToken(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	sock := lineServer(t, func(conn net.Conn, req map[string]any) {
		fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"rows":0,"as_of":"2026-01-15T12:00:00Z","version":1,"format":"ndjson","columns":["email"],"compress":"","complete":true}}`+"\n", req["id"])
	})
	const token = "s3cr3t-t0ken-value"
	c, err := Dial(ctx, "unix:"+sock, WithToken(token), WithBook("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{c, c.cfg, *c.cfg, struct{ C *Client }{c}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, token) {
				t.Errorf("%s of %T shows the token: %s", verb, v, out)
			}
		}
	}
	if out := fmt.Sprintf("%+v", c.cfg); !strings.Contains(out, "[redacted]") || !strings.Contains(out, sock) {
		t.Errorf("config prints as %s", out)
	}
}

// A connection retired for idleness by one call while another call was about to use it
// fails nothing: the other call's request was never written, so it dials again (it used
// to fail with "connection retired after being idle").
func TestIdleRetirementFailsNoCall(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
	sock := lineServer(t, replyOK)
	c, err := Dial(ctx, "unix:"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := c.cur
	retire := func(m *muxConn) { // what another call's conn() does to an idle connection
		m.fail(&ConnError{Op: "read", Addr: c.cfg.address, Err: errors.New("connection retired after being idle")})
	}
	testHookBeforeCall = func(m *muxConn) { testHookBeforeCall = nil; retire(m) }
	defer func() { testHookBeforeCall = nil }()
	err = c.Call(ctx, "ping", nil, nil)
	testHookBeforeCall = nil
	if err != nil {
		t.Fatalf("a call whose connection was retired before it wrote anything: %v", err)
	}
	if c.cur == first {
		t.Fatal("no new connection")
	}
	// Only once: a second dead connection is the call's error.
	testHookBeforeCall = retire // at every attempt
	if err := c.Call(ctx, "ping", nil, nil); !errors.Is(err, ErrConnLost) {
		t.Fatalf("retired twice: %v, want a *ConnError", err)
	}
}

// Calls waiting for a shared dial that timed out fail with it, at once: they used to dial
// again one after another, the last one waiting for every dial timeout in turn.
func TestWaitersShareAFailedDial(t *testing.T) {
	ctx := testCtx(t, 20*time.Second)
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
	first := make(chan net.Conn, 1)
	go func() {
		for n := 0; ; n++ {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			if n > 0 {
				t.Cleanup(func() { conn.Close() })
				continue // no hello: the dial times out
			}
			r := bufio.NewReader(conn)
			line, _ := r.ReadBytes('\n')
			var req map[string]any
			json.Unmarshal(line, &req)
			fmt.Fprintf(conn, `{"id":%v,"jsonrpc":"2.0","result":{"limits":{"max_in_flight":8}}}`+"\n", req["id"])
			first <- conn
		}
	}()
	c, err := Dial(ctx, "unix:"+sock, WithDialTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	(<-first).Close() // the connection is lost: the next calls dial
	waitFor(ctx, t, "the connection to be lost", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur.deadErr() != nil
	})
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Call(ctx, "ping", nil, nil); !errors.Is(err, ErrConnLost) {
				t.Errorf("call: %v, want a *ConnError", err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 1200*time.Millisecond {
		t.Fatalf("8 calls waiting for a dial with a 300 ms timeout took %v", d)
	}
}
