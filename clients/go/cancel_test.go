package segmentd

import (
	"context"
	"encoding/base64"
	"errors"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cancelling the context of a stream, a subscription or a call ends it (rpc.cancel: the
// server answers with its final reply), and the client goes on working.
func TestCancellationEndsStreamsAndKeepsTheClient(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 40*time.Second)
	c := srv.client()
	mustCall(ctx, t, c, "fields.define", map[string]any{"name": "bio", "type": "text"}, nil)
	_, _ = vipSegment(ctx, t, c, []string{"enter"})
	// 2,000 contacts with 1 KB of text each: about 2 MB of rows, far more than the socket buffers
	// hold, so the stream is still running when it is cancelled.
	// The text is random, so that gzip cannot shrink it into the buffers either.
	rnd := rand.New(rand.NewSource(1))
	const n = 2000
	for from := 0; from < n; from += 500 {
		var contacts []map[string]any
		for _, e := range emails("c", from, 500) {
			raw := make([]byte, 750)
			rnd.Read(raw)
			bio := base64.StdEncoding.EncodeToString(raw)
			contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip"}, "fields": map[string]any{"bio": bio}})
		}
		mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
	}
	cancels := func() int { return getStats(ctx, t, c).RPC.RequestsByMethod["rpc.cancel"] }
	// A subscription has a connection of its own, so the server may count its rpc.cancel
	// after answering server.stats on c's connection (seen on a loaded CI run): wait for the
	// count to arrive, then require exactly one.
	oneCancelSince := func(before int) {
		t.Helper()
		waitFor(ctx, t, "the server to count the rpc.cancel", func() bool { return cancels() > before })
		if got := cancels(); got != before+1 {
			t.Fatalf("rpc.cancel sent %d times, want 1", got-before)
		}
	}

	t.Run("stream", func(t *testing.T) {
		for _, compress := range []string{"", "gzip"} {
			before := cancels()
			sctx, cancel := context.WithCancel(ctx)
			s, err := c.Resolve(sctx, StreamParams{ID: 1, Columns: []string{"email", "bio"}, BatchSize: 1, Compress: compress})
			if err != nil {
				t.Fatal(err)
			}
			if !s.Next() {
				t.Fatalf("no first row: %v", s.Err())
			}
			cancel()
			rows := 1
			for s.Next() {
				rows++
			}
			if !errors.Is(s.Err(), context.Canceled) {
				t.Fatalf("Err() = %v, want context.Canceled", s.Err())
			}
			sum := s.Summary()
			if sum == nil || sum.Complete || sum.Rows >= n {
				t.Fatalf("summary %+v: the server did not end the stream on rpc.cancel", sum)
			}
			if got := cancels(); got != before+1 {
				t.Fatalf("rpc.cancel sent %d times, want 1", got-before)
			}
			s.Close()
		}
	})

	t.Run("subscription", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		sub, err := c.Subscribe(sctx, SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !sub.Next() || sub.Event().Cursor != 1 {
			t.Fatalf("first event: %+v %v", sub.Event(), sub.Err())
		}
		before := cancels()
		cancel()
		for sub.Next() {
		}
		if !errors.Is(sub.Err(), context.Canceled) || sub.Resumes() != 0 {
			t.Fatalf("Err() = %v after %d resumes", sub.Err(), sub.Resumes())
		}
		oneCancelSince(before)
		sub.Close()
	})

	t.Run("subscription closed while Next waits", func(t *testing.T) {
		sub, err := c.Subscribe(ctx, SubscribeOptions{After: n}) // everything read: Next waits
		if err != nil {
			t.Fatal(err)
		}
		before := cancels()
		ended := make(chan bool)
		go func() { ended <- sub.Next() }()
		waitFor(ctx, t, "the subscription to start", func() bool { return sub.Resumes() == 0 && sub.opened.Load() == 1 })
		time.Sleep(20 * time.Millisecond)
		sub.Close()
		select {
		case got := <-ended:
			if got || sub.Err() != nil {
				t.Fatalf("Next() = %v, Err() = %v after Close", got, sub.Err())
			}
			oneCancelSince(before)
		case <-ctx.Done():
			t.Fatal("Close did not end a waiting Next")
		}
	})

	t.Run("call", func(t *testing.T) {
		before := cancels()
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		err := c.Call(cctx, "events.subscribe", nil, nil) // runs until cancelled
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want DeadlineExceeded, got %v", err)
		}
		waitFor(ctx, t, "the server to end the cancelled call", func() bool {
			st := getStats(ctx, t, c)
			return st.RPC.RequestsInFlight == 1 && st.RPC.RequestsByMethod["rpc.cancel"] == before+1
		})
	})

	// Same connection throughout: nothing above broke it.
	conn := c.Hello().Connection
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); mustCallNoFatal(ctx, t, c, "rpc.ping") }()
	}
	wg.Wait()
	if c.Hello().Connection != conn {
		t.Fatal("the client had to reconnect")
	}
}

func mustCallNoFatal(ctx context.Context, t *testing.T, c *Client, method string) {
	if err := c.Call(ctx, method, nil, nil); err != nil {
		t.Errorf("%s: %v", method, err)
	}
}

// A consumer that stops reading is ended by the server with -32004 after
// --subscriber-timeout; the subscription resumes after its last event by itself and
// still delivers every event once.
func TestSubscriberTimeoutIsResumed(t *testing.T) {
	srv := startServer(t, serverOptions{args: []string{"--subscriber-timeout", "1"}})
	ctx := testCtx(t, 40*time.Second)
	c := srv.client()
	vipSegment(ctx, t, c, []string{"enter"})
	// About 2.5 MB of notifications (long addresses): far more than socket buffers hold,
	// so the server's writes wait while the consumer stalls.
	const n = 6000
	domain := strings.Repeat("long-domain-label.", 10) + "example.com"
	for from := 0; from < n; from += 1000 {
		var contacts []map[string]any
		for _, e := range emails("slow-consumer-", from, 1000) {
			contacts = append(contacts, map[string]any{"email": strings.Replace(e, "example.com", domain, 1), "labels": []string{"vip"}})
		}
		mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
	}
	var mu sync.Mutex
	var reasons []error
	sub, err := c.Subscribe(ctx, SubscribeOptions{
		Backoff:  Backoff{Initial: 10 * time.Millisecond},
		OnResume: func(r ResumeInfo) { mu.Lock(); reasons = append(reasons, r.Err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if !sub.Next() {
		t.Fatal(sub.Err())
	}
	// Stall until the server has given up on this subscriber.
	waitFor(ctx, t, "the server to end the stalled subscription", func() bool {
		return getStats(ctx, t, c).RPC.ErrorsByType["overloaded"] >= 1
	})
	next := int64(2)
	for sub.Cursor() < n && sub.Next() {
		if ev := sub.Event(); ev.Cursor != next {
			t.Fatalf("got cursor %d, want %d", ev.Cursor, next)
		}
		next++
	}
	if sub.Cursor() != n || sub.Resumes() < 1 {
		t.Fatalf("cursor %d (want %d), %d resumes, err %v", sub.Cursor(), n, sub.Resumes(), sub.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) == 0 || !errors.Is(reasons[0], ErrOverloaded) {
		t.Fatalf("resumed because of %v, want -32004", reasons)
	}
	last, _ := reasons[0].(*Error).DataInt("last_cursor")
	t.Logf("stalled subscriber: %v (last_cursor %d); resumed %d time(s), %d events once each", reasons[0], last, sub.Resumes(), n)
}
