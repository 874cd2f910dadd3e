package segmentd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// examples/resolve_gzip, built with go build, run against a real server: the CSV on its
// stdout is byte for byte the CSV of a plain (uncompressed) segments.resolve; an error
// reply exits 2 with "error CODE TYPE at PATH: MESSAGE".
func TestExampleResolveGzip(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	serverBinary(t) // skips without a server, before building anything
	ctx := testCtx(t, 50*time.Second)
	bin := filepath.Join(t.TempDir(), "resolve_gzip")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./examples/resolve_gzip")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/resolve_gzip: %v\n%s", err, out)
	}

	srv := startServer(t, serverOptions{})
	c := srv.client()
	mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": []map[string]any{
		{"email": "ana@example.com", "name": `Ana, "the" first`, "labels": []string{"vip", "gold"}},
		{"email": "umit@example.com", "name": "Ümit 東京", "labels": []string{"vip"}},
		{"email": "budi@example.com", "name": "line one\nline two", "labels": []string{"vip"}, "status": "unsubscribed"},
		{"email": "citra@example.com", "labels": []string{"vip"}},
		{"email": "dewi@example.com", "name": "Dewi", "labels": []string{"newsletter"}},
	}}, nil)
	seg, _ := vipSegment(ctx, t, c, []string{"enter"})

	run := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(rctx, bin, args...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case rctx.Err() != nil:
			t.Fatalf("resolve_gzip %q did not exit in time; stderr: %s", args, errOut.String())
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			t.Fatalf("resolve_gzip: %v", err)
		}
		return code, out.String(), errOut.String()
	}

	params := map[string]any{"id": seg, "format": "csv", "audience": "all", "columns": []string{"email", "name", "status", "labels"}}
	plain := plainCSV(ctx, t, srv, params)
	if n := strings.Count(plain, "\r\n"); n != 5 || !strings.Contains(plain, "\"line one\nline two\"") {
		t.Fatalf("the plain CSV has %d records, want a header and 4 contacts:\n%s", n, plain)
	}
	code, out, errOut := run(srv.sock, jsonString(params))
	if code != 0 || out != plain {
		t.Fatalf("exit %d, stderr %q; stdout:\n%q\nwant:\n%q", code, errOut, out, plain)
	}
	var summary StreamSummary
	if err := json.Unmarshal([]byte(errOut), &summary); err != nil || summary.Rows != 4 || !summary.Complete {
		t.Fatalf("final reply on stderr: %q (%v)", errOut, err)
	}

	// The usage line of the docs (default audience and columns).
	code, out, errOut = run(srv.sock, `{"id":1,"format":"csv"}`)
	if want := plainCSV(ctx, t, srv, map[string]any{"id": 1, "format": "csv"}); code != 0 || out != want {
		t.Fatalf("exit %d, stderr %q; stdout:\n%q\nwant:\n%q", code, errOut, out, want)
	}

	code, out, errOut = run(srv.sock, `{"id": 999, "format": "csv"}`)
	if code != 2 || out != "" || errOut != "error -32001 not_found: no segment with id 999\n" {
		t.Fatalf("unknown segment: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = run(srv.sock, `{"id":1,"format":"csv","columns":["email","shoe_size"]}`)
	if code != 2 || !regexp.MustCompile(`^error -32602 invalid_params at columns\[1\]: unknown column "shoe_size"`).MatchString(errOut) {
		t.Fatalf("unknown column: exit %d, stderr %q", code, errOut)
	}

	// Not an error reply: exit 1, with a message.
	if code, _, errOut = run(filepath.Join(srv.dir, "missing.sock"), `{"id":1}`); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("no server: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut = run(srv.sock, `{"idd":1}`); code != 1 || !strings.Contains(errOut, `unknown field "idd"`) {
		t.Fatalf("misspelt param: exit %d, stderr %q", code, errOut)
	}
}

// plainCSV returns the CSV text of a segments.resolve without gzip, as the server sent
// it (the csv members of its notifications, joined), over a connection of its own.
func plainCSV(ctx context.Context, t *testing.T, srv *testServer, params map[string]any) string {
	t.Helper()
	cfg := &config{network: "unix", address: srv.sock, dialTimeout: 10 * time.Second, clientName: "test"}
	rc, err := dialRaw(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = rc.nc.SetDeadline(dl)
	}
	raw, _ := json.Marshal(params)
	if _, err := rc.nc.Write(encodeRequest(1, "segments.resolve", raw)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		m, err := readMessage(rc.br)
		if err != nil {
			t.Fatalf("plain segments.resolve: %v", err)
		}
		if m.Method == "segments.rows" {
			var p struct{ CSV string }
			if err := json.Unmarshal(m.Params, &p); err != nil {
				t.Fatal(err)
			}
			b.WriteString(p.CSV)
			continue
		}
		if id, ok := m.intID(); m.isReply() && ok && id == 1 {
			if m.Error != nil {
				t.Fatalf("plain segments.resolve: %v", m.Error.toError("segments.resolve"))
			}
			return b.String()
		}
	}
}
