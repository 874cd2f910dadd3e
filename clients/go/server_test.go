package segmentd

// Test helpers: a real segmentd server per test, started from SEGMENTD_BIN (or the
// repository's ../../.build/debug/segmentd) in a temporary directory, and always stopped.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverBinary finds the server to test against, or skips the test.
func serverBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SEGMENTD_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			t.Fatalf("SEGMENTD_BIN=%s: %v", bin, err)
		}
		return abs
	}
	fallback, _ := filepath.Abs(filepath.Join("..", "..", ".build", "debug", "segmentd"))
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	t.Skip("no segmentd binary: set SEGMENTD_BIN=/path/to/segmentd (or build ../../.build/debug/segmentd)")
	return ""
}

type serverOptions struct {
	tcp   bool     // also listen on TCP (127.0.0.1, a free port) with token
	token string   // the TCP token
	args  []string // more `serve` flags
}

// testServer is one segmentd process (restartable on the same data directory and socket).
type testServer struct {
	t      *testing.T
	bin    string
	opts   serverOptions
	dir    string
	sock   string
	tcp    string
	log    *syncBuffer
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startServer starts a server and waits until it answers rpc.ping; t.Cleanup stops it.
func startServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	bin := serverBinary(t)
	// A short path: a socket path must stay under ~100 bytes.
	dir, err := os.MkdirTemp("/tmp", "sd")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, bin: bin, opts: opts, dir: dir, sock: filepath.Join(dir, "s.sock"), log: &syncBuffer{}}
	if opts.tcp {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.tcp = l.Addr().String()
		l.Close()
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			logText := s.log.String()
			if len(logText) > 8000 {
				logText = "…" + logText[len(logText)-8000:]
			}
			t.Logf("server log (%s):\n%s", s.dir, logText)
		}
		os.RemoveAll(s.dir)
	})
	s.start()
	return s
}

// start starts the process (again) and waits until it answers rpc.ping.
func (s *testServer) start() {
	s.t.Helper()
	args := []string{"serve", "--data-dir", filepath.Join(s.dir, "data"), "--socket", s.sock,
		"--export-dir", filepath.Join(s.dir, "exports"), "--reevaluate-every", "86400"}
	if s.opts.tcp {
		args = append(args, "--tcp", s.tcp, "--token", s.opts.token)
	}
	args = append(args, s.opts.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	for _, kv := range os.Environ() { // only the token given here, if any
		if !strings.HasPrefix(kv, "SEGMENTD_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	setDeathSignal(cmd) // the server dies with the test binary (Linux)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", s.bin, err)
	}
	s.starts++
	fmt.Fprintf(s.log, "--- test: started server #%d (pid %d)\n", s.starts, cmd.Process.Pid)
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			s.t.Fatalf("the server exited during start-up: %v", cmd.ProcessState)
		default:
		}
		if s.ping() == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the server did not answer rpc.ping within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *testServer) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix:"+s.sock)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Call(ctx, "rpc.ping", nil, nil)
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *testServer) kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Fatalf("the server did not die within 10 s of SIGKILL")
	}
	s.cmd = nil
}

// terminate stops the server gracefully (SIGTERM) and waits, at most within, for it to
// exit; it returns how long that took. Past within it kills the server and fails the test.
func (s *testServer) terminate(within time.Duration) time.Duration {
	s.t.Helper()
	began := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(within):
		s.kill()
		s.t.Fatalf("the server did not exit within %v of SIGTERM", within)
	}
	s.cmd = nil
	return time.Since(began)
}

// stop ends the server: SIGTERM, then SIGKILL if it has not exited within 5 s.
func (s *testServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// client dials the server's Unix socket; t.Cleanup closes it.
func (s *testServer) client(opts ...Option) *Client {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix:"+s.sock, opts...)
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a test's overall deadline: every wait in the tests is bounded by it.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustCall calls and fails the test on an error.
func mustCall(ctx context.Context, t *testing.T, c *Client, method string, params, result any, opts ...CallOption) {
	t.Helper()
	if err := c.Call(ctx, method, params, result, opts...); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

// stats is the part of server.stats the tests look at.
type stats struct {
	RPC struct {
		RequestsInFlight int            `json:"requests_in_flight"`
		RequestsByMethod map[string]int `json:"requests_by_method"`
		ErrorsByType     map[string]int `json:"errors_by_type"`
		ConnectionsOpen  int            `json:"connections_open"`
	} `json:"rpc"`
}

func getStats(ctx context.Context, t *testing.T, c *Client) stats {
	t.Helper()
	var st stats
	mustCall(ctx, t, c, "server.stats", nil, &st)
	return st
}

// waitFor polls cond every 10 ms until it holds, failing the test at the deadline.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// vipSegment creates the segment "label contains vip" and a trigger on it.
func vipSegment(ctx context.Context, t *testing.T, c *Client, on []string, opts ...CallOption) (segment, trigger int64) {
	t.Helper()
	var seg, trg struct{ ID int64 }
	mustCall(ctx, t, c, "segments.create", map[string]any{
		"name":    "VIP contacts",
		"filters": []Filter{{"dimension": "label", "op": "contains", "value": "vip"}},
	}, &seg, opts...)
	mustCall(ctx, t, c, "triggers.create", map[string]any{"segment": seg.ID, "on": on}, &trg, opts...)
	return seg.ID, trg.ID
}

// readLog reads a book's whole event log with events.read.
func readLog(ctx context.Context, t *testing.T, c *Client, opts ...CallOption) []Event {
	t.Helper()
	var all []Event
	after := int64(0)
	for i := 0; i < 10000; i++ {
		var page struct {
			Events []Event `json:"events"`
			Next   int64   `json:"next"`
		}
		mustCall(ctx, t, c, "events.read", map[string]any{"after": after, "limit": 10000}, &page, opts...)
		if len(page.Events) == 0 {
			return all
		}
		all = append(all, page.Events...)
		after = page.Next
	}
	t.Fatal("events.read did not end")
	return nil
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want an *Error, got %T: %v", err, err)
	}
	return e
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func emails(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d@example.com", prefix, from+i)
	}
	return out
}
