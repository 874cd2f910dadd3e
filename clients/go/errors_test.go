package segmentd

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// An error reply is an error the caller can inspect, never a hang: for a call, for a
// stream (with and without gzip), for a subscription, and for a call pending when the
// server dies.
func TestErrorRepliesAreErrorsNotHangs(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 30*time.Second)
	c := srv.client()
	mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": []map[string]any{
		{"email": "ana@example.com", "labels": []string{"vip"}}}}, nil)

	t.Run("bad filter", func(t *testing.T) {
		err := c.Call(ctx, "segments.count", map[string]any{
			"filters": []Filter{{"dimension": "label", "op": "has", "value": "vip"}}}, nil)
		e := asError(t, err)
		if e.Code != -32602 || e.Type != "invalid_params" || e.Path != "filters[0].op" || e.Method != "segments.count" {
			t.Fatalf("got code %d type %q path %q method %q", e.Code, e.Type, e.Path, e.Method)
		}
		if !errors.Is(err, ErrInvalidParams) || errors.Is(err, ErrNotFound) {
			t.Fatal("errors.Is does not compare codes")
		}
		if !strings.Contains(e.Error(), `"filters[0].op"`) || !strings.Contains(e.Message, "has") {
			t.Fatalf("message: %v", e)
		}
	})

	t.Run("not found and unknown method", func(t *testing.T) {
		e := asError(t, c.Call(ctx, "segments.get", map[string]any{"id": 404}, nil))
		if e.Code != CodeNotFound || e.Type != "not_found" || e.Path != "" {
			t.Fatalf("segments.get 404: %+v", e)
		}
		err := c.Call(ctx, "no.such.method", nil, nil)
		e = asError(t, err)
		if e.Code != -32601 || e.Type != "method_not_found" || e.Data["method"] != "no.such.method" || !errors.Is(err, ErrMethodNotFound) {
			t.Fatalf("unknown method: %+v", e)
		}
		var pong struct{ Pong bool }
		mustCall(ctx, t, c, "rpc.ping", nil, &pong) // the connection is fine after errors
		if !pong.Pong {
			t.Fatal("no pong")
		}
	})

	t.Run("error on a stream", func(t *testing.T) {
		for _, p := range []StreamParams{
			{ID: 404},
			{ID: 404, Format: "csv", Compress: "gzip"},
			{ID: 404, Compress: "gzip"},
			{Filters: []Filter{}, Columns: []string{"email", "shoe_size"}, Format: "csv", Compress: "gzip"},
			{Filters: []Filter{{"dimension": "planet", "op": "equals", "value": "mars"}}},
		} {
			for _, export := range []bool{false, true} {
				open := c.Resolve
				if export {
					open = c.Export
				}
				s, err := open(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for s.Next() {
					n++
				}
				err = s.Err()
				e := asError(t, err)
				want := map[bool]int{true: CodeNotFound, false: CodeInvalidParams}[p.ID == 404]
				if e.Code != want || n != 0 || s.Summary() != nil {
					t.Fatalf("%s: rows %d, error %v, summary %v", jsonString(p.object()), n, err, s.Summary())
				}
				if p.Columns != nil && e.Path != "columns[1]" {
					t.Fatalf("path %q, want columns[1]", e.Path)
				}
				if ctx.Err() != nil {
					t.Fatal("the stream waited for the test's deadline")
				}
				s.Close()
			}
		}
	})

	t.Run("subscription errors that cannot be resumed", func(t *testing.T) {
		for _, o := range []SubscribeOptions{{After: 999}, {Book: "nosuchbook"}, {Triggers: []int64{42}}} {
			sub, err := c.Subscribe(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if sub.Next() {
				t.Fatalf("%+v: got an event", o)
			}
			e := asError(t, sub.Err())
			if e.Code != CodeInvalidParams && e.Code != CodeNotFound {
				t.Fatalf("%+v: %v", o, e)
			}
			if o.After == 999 { // from the future: the error says where the log ends
				if newest, ok := e.DataInt("newest_cursor"); !ok || newest != 0 {
					t.Fatalf("%+v: data %v, want newest_cursor 0", o, e.Data)
				}
			}
			if sub.Resumes() != 0 {
				t.Fatalf("%+v: retried %d times", o, sub.Resumes())
			}
			sub.Close()
		}
	})

	// Last: it kills the server.
	t.Run("server killed while a call is pending", func(t *testing.T) {
		pending := make(chan error, 1)
		go func() {
			// events.subscribe only ends when cancelled: the call stays pending.
			pending <- c.Call(ctx, "events.subscribe", nil, nil)
		}()
		other := srv.client()
		waitFor(ctx, t, "the call to reach the server", func() bool {
			return getStats(ctx, t, other).RPC.RequestsByMethod["events.subscribe"] >= 1
		})
		srv.kill()
		var err error
		select {
		case err = <-pending:
		case <-ctx.Done():
			t.Fatal("the pending call hangs after the server died")
		}
		var ce *ConnError
		if !errors.As(err, &ce) || !errors.Is(err, ErrConnLost) || errors.As(err, new(*Error)) {
			t.Fatalf("want a *ConnError, got %T: %v", err, err)
		}
		// While it is down, calls fail at once (dialling), and they work again once it is back.
		if err := c.Call(ctx, "rpc.ping", nil, nil); !errors.Is(err, ErrConnLost) {
			t.Fatalf("call while the server is down: %v", err)
		}
		srv.start()
		mustCall(ctx, t, c, "rpc.ping", nil, nil)
	})
}

// A cursor that retention passed is refused with data.resume_after (not only in the
// message); resuming there delivers what is kept; NewestCursor and a live-only
// subscription work on a pruned log.
func TestPrunedCursorSaysWhereToResume(t *testing.T) {
	// Keeps 5 events, pruned on the clock tick (every second here; the later flag wins).
	srv := startServer(t, serverOptions{args: []string{"--event-retention-count", "5", "--reevaluate-every", "1"}})
	ctx := testCtx(t, 30*time.Second)
	c := srv.client()
	vipSegment(ctx, t, c, []string{"enter"})
	upsert := func(prefix string, n int) {
		var contacts []map[string]any
		for _, e := range emails(prefix, 0, n) {
			contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip"}})
		}
		mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
	}
	upsert("r", 20)
	waitFor(ctx, t, "retention to prune the log", func() bool {
		return errors.Is(c.Call(ctx, "events.read", map[string]any{"after": 0}, nil), ErrInvalidParams)
	})

	sub, err := c.Subscribe(ctx, SubscribeOptions{After: 0, Backoff: Backoff{Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Next() {
		t.Fatalf("got an event from a pruned cursor: %+v", sub.Event())
	}
	e := asError(t, sub.Err())
	resumeAfter, ok := e.DataInt("resume_after")
	if e.Code != CodeInvalidParams || e.Path != "after" || !ok || resumeAfter < 15 || sub.Resumes() != 0 {
		t.Fatalf("after 0 on a pruned log: %v, data %v, %d resumes", e, e.Data, sub.Resumes())
	}
	sub.Close()
	if newest, err := c.NewestCursor(ctx); err != nil || newest != 20 {
		t.Fatalf("NewestCursor() = %d, %v; want 20", newest, err)
	}

	// Resuming where the error says delivers what is kept, once each.
	var kept struct{ Events []Event }
	mustCall(ctx, t, c, "events.read", map[string]any{"after": resumeAfter}, &kept)
	if len(kept.Events) == 0 || kept.Events[len(kept.Events)-1].Cursor != 20 {
		t.Fatalf("kept events after %d: %+v", resumeAfter, kept.Events)
	}
	sub, err = c.Subscribe(ctx, SubscribeOptions{After: resumeAfter})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range kept.Events {
		if !sub.Next() || sub.Event().Cursor != want.Cursor || sub.Event().Email != want.Email {
			t.Fatalf("got %+v (%v), want %+v", sub.Event(), sub.Err(), want)
		}
	}
	sub.Close()

	// Live only, on the pruned log.
	live, err := c.Subscribe(ctx, SubscribeOptions{After: Newest})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	next := make(chan bool, 1)
	go func() { next <- live.Next() }()
	waitFor(ctx, t, "the live subscription to start", func() bool { return live.Cursor() != Newest && live.opened.Load() == 1 })
	if live.Cursor() != 20 {
		t.Fatalf("live subscription started after %d, want 20", live.Cursor())
	}
	upsert("new", 1)
	select {
	case ok := <-next:
		if !ok || live.Event().Cursor != 21 || live.Event().Email != emails("new", 0, 1)[0] {
			t.Fatalf("live: %v %+v %v", ok, live.Event(), live.Err())
		}
	case <-ctx.Done():
		t.Fatal("no live event")
	}
}
