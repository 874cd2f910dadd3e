package segmentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A subscriber keeps every event, once and in order, while the server is killed with
// SIGKILL and started again (twice) on the same data directory and socket, and a writer
// keeps writing through it all. The subscriber's sequence must be exactly the log that
// events.read returns at the end.
func TestSubscribeSurvivesKillAndRestart(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 50*time.Second)
	admin := srv.client()
	_, trigger := vipSegment(ctx, t, admin, []string{"enter", "exit"})

	// The subscriber, with the default backoff.
	type delivery struct {
		ev      Event
		at      time.Time
		resumes int
	}
	var (
		mu        sync.Mutex
		got       []delivery
		resumeErr []string
	)
	sub, err := admin.Subscribe(ctx, SubscribeOptions{
		OnResume: func(info ResumeInfo) {
			mu.Lock()
			resumeErr = append(resumeErr, fmt.Sprintf("after %d: %v (wait %v)", info.After, info.Err, info.Delay.Round(time.Millisecond)))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for sub.Next() {
			d := delivery{ev: sub.Event(), at: time.Now(), resumes: sub.Resumes()}
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
		}
	}()

	// The writer: batches of new VIP contacts (enter), and the previous batch's first
	// half losing the label (exit). A batch that fails because the connection was lost
	// is sent again: upserts are idempotent, so a batch that was in fact committed fires
	// nothing the second time.
	const batches, perBatch = 60, 10
	writer := srv.client()
	var written atomic.Int64
	writerErr := make(chan error, 1)
	go func() {
		for b := 0; b < batches; b++ {
			var contacts []map[string]any
			for _, e := range emails("w", b*perBatch, perBatch) {
				contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip", fmt.Sprintf("batch-%d", b)}})
			}
			if b > 0 {
				for _, e := range emails("w", (b-1)*perBatch, perBatch/2) {
					contacts = append(contacts, map[string]any{"email": e, "remove_labels": []string{"vip"}})
				}
			}
			for attempt := 0; ; attempt++ {
				err := writer.Call(ctx, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrConnLost) || attempt > 2000 || ctx.Err() != nil {
					writerErr <- fmt.Errorf("batch %d: %w", b, err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			written.Add(1)
			time.Sleep(2 * time.Millisecond) // a steady trickle rather than one burst
		}
		writerErr <- nil
	}()

	// Kill and restart the server twice while both are at work.
	type restart struct {
		at            time.Time
		resumesBefore int
	}
	var restarts []restart
	resumedEvent := func(r restart) bool { // an event delivered after resuming from r
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1].resumes > r.resumesBefore
	}
	for k := 1; k <= 2; k++ {
		waitFor(ctx, t, fmt.Sprintf("batch %d to be written", k*batches/3), func() bool {
			return written.Load() >= int64(k*batches/3)
		})
		if k > 1 { // the subscriber is back on the restarted server before it dies again
			waitFor(ctx, t, "an event after the restart", func() bool { return resumedEvent(restarts[k-2]) })
		}
		before := sub.Resumes()
		srv.kill()
		at := time.Now()
		srv.start()
		restarts = append(restarts, restart{at: at, resumesBefore: before})
	}
	select {
	case err := <-writerErr:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("the writer did not finish: %d of %d batches", written.Load(), batches)
	}

	log := readLog(ctx, t, admin)
	if len(log) == 0 {
		t.Fatal("the log is empty")
	}
	last := log[len(log)-1].Cursor
	waitFor(ctx, t, fmt.Sprintf("the subscriber to reach cursor %d", last), func() bool { return sub.Cursor() >= last })
	sub.Close()
	<-subDone
	if err := sub.Err(); err != nil {
		t.Fatalf("subscription ended with %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	// Exactly the log: every event once, in cursor order, none missing, none doubled.
	seen := map[int64]int{}
	for i, d := range got {
		seen[d.ev.Cursor]++
		if i > 0 && d.ev.Cursor <= got[i-1].ev.Cursor {
			t.Errorf("cursor %d delivered after %d", d.ev.Cursor, got[i-1].ev.Cursor)
		}
	}
	var missing, doubled []int64
	for _, e := range log {
		switch seen[e.Cursor] {
		case 0:
			missing = append(missing, e.Cursor)
		case 1:
		default:
			doubled = append(doubled, e.Cursor)
		}
	}
	if len(missing) > 0 || len(doubled) > 0 || len(got) != len(log) {
		t.Fatalf("subscriber got %d events, the log has %d; missing %v, doubled %v", len(got), len(log), missing, doubled)
	}
	enters := 0
	for i, e := range log {
		g := got[i].ev
		if g.Cursor != e.Cursor || g.Email != e.Email || g.Type != e.Type || g.Trigger != trigger || !g.At.Equal(e.At) || g.Cause != e.Cause {
			t.Fatalf("event %d: subscriber got %+v, the log has %+v", i, g, e)
		}
		if e.Type == "enter" {
			enters++
		}
	}
	if enters != batches*perBatch || len(log)-enters != (batches-1)*perBatch/2 {
		t.Errorf("log has %d enter and %d exit events, want %d and %d", enters, len(log)-enters, batches*perBatch, (batches-1)*perBatch/2)
	}
	if sub.Resumes() < len(restarts) {
		t.Errorf("the subscription resumed %d times for %d restarts", sub.Resumes(), len(restarts))
	}

	// Time from each restart to the first event delivered by a resumed subscription.
	var lat []string
	for _, r := range restarts {
		i := sort.Search(len(got), func(i int) bool { return got[i].resumes > r.resumesBefore && got[i].at.After(r.at) })
		if i == len(got) {
			t.Errorf("no event was delivered after the restart at %v", r.at)
			continue
		}
		lat = append(lat, fmt.Sprintf("%dms", got[i].at.Sub(r.at).Milliseconds()))
	}
	summary := fmt.Sprintf("kill -9 + restart while subscribed: events=%d (enter %d, exit %d) restarts=%d resumes=%d missing=0 doubled=0 restart->first resumed event=%s",
		len(got), enters, len(got)-enters, len(restarts), sub.Resumes(), strings.Join(lat, ","))
	t.Log(summary)
	t.Logf("resume reasons: %s", strings.Join(resumeErr, "; "))
	fmt.Println("RELIABILITY", summary)
}

// A graceful restart (SIGTERM) ends an open subscription at once with its final result
// ({"ended": "cancelled", "last_cursor": N}) instead of holding the shutdown for the drain
// time: the server exits well inside a long --drain-seconds. The subscription resumes
// after the last event delivered, every event once.
func TestSubscribeSurvivesGracefulRestart(t *testing.T) {
	const drain = 60 * time.Second
	srv := startServer(t, serverOptions{args: []string{"--drain-seconds", fmt.Sprint(int(drain.Seconds()))}})
	ctx := testCtx(t, 45*time.Second)
	c := srv.client()
	vipSegment(ctx, t, c, []string{"enter"})
	upsert := func(from int) {
		var contacts []map[string]any
		for _, e := range emails("g", from, 50) {
			contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip"}})
		}
		upsertRetrying(ctx, t, c, contacts)
	}
	var mu sync.Mutex
	var reasons []error
	sub, err := c.Subscribe(ctx, SubscribeOptions{
		Backoff:  Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		OnResume: func(r ResumeInfo) { mu.Lock(); reasons = append(reasons, r.Err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	readUpTo := func(cursor int64) {
		t.Helper()
		for sub.Cursor() < cursor {
			prev := sub.Cursor()
			if !sub.Next() {
				t.Fatalf("subscription ended at cursor %d: %v", prev, sub.Err())
			}
			if got := sub.Event().Cursor; got != prev+1 {
				t.Fatalf("cursor %d after %d", got, prev)
			}
		}
	}
	upsert(0)
	readUpTo(50)
	// The subscription is open (waiting for the next event) when SIGTERM comes.
	took := srv.terminate(drain / 2)
	t.Logf("SIGTERM with a subscription open (--drain-seconds %d): the server exited in %v", int(drain.Seconds()), took.Round(time.Millisecond))
	srv.start()
	upsert(50) // the client dials the new server by itself
	readUpTo(100)
	if n := len(readLog(ctx, t, c)); n != 100 || sub.Resumes() < 1 {
		t.Fatalf("log has %d events, the subscription resumed %d times", n, sub.Resumes())
	}
	mu.Lock()
	defer mu.Unlock()
	var ended *errEnded
	if len(reasons) == 0 || !errors.Is(reasons[0], ErrEndedByServer) || !errors.As(reasons[0], &ended) {
		t.Fatalf("first resume because of %v, want the server's final reply", reasons)
	}
	var final struct {
		Ended      string `json:"ended"`
		LastCursor int64  `json:"last_cursor"`
	}
	if err := json.Unmarshal(ended.result, &final); err != nil || final.Ended != "cancelled" || final.LastCursor != 50 {
		t.Fatalf("final result %s, want ended cancelled with last_cursor 50", ended.result)
	}
}

// A live-only subscription (After: Newest) delivers none of the events written before it
// started, and every event after, once each, across a restart that comes before its
// first event: it resumes after the cursor it started from, not from "now" again.
func TestSubscribeLiveOnly(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 40*time.Second)
	c := srv.client()
	_, trigger := vipSegment(ctx, t, c, []string{"enter"})
	batch := func(prefix string, n int) []map[string]any {
		var contacts []map[string]any
		for _, e := range emails(prefix, 0, n) {
			contacts = append(contacts, map[string]any{"email": e, "labels": []string{"vip"}})
		}
		return contacts
	}
	upsertRetrying(ctx, t, c, batch("before", 20)) // cursors 1-20: not for the subscriber

	var mu sync.Mutex
	var got []Event
	var reasons []string
	sub, err := c.Subscribe(ctx, SubscribeOptions{
		After: Newest,
		// Long enough that the writes after the restart land before the resume.
		Backoff: Backoff{Initial: 300 * time.Millisecond, Max: time.Second},
		OnResume: func(r ResumeInfo) {
			mu.Lock()
			reasons = append(reasons, fmt.Sprintf("after %d: %v", r.After, r.Err))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Cursor() != 20 {
		t.Fatalf("Cursor() = %d right after Subscribe, want 20 (the newest cursor then)", sub.Cursor())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sub.Next() {
			mu.Lock()
			got = append(got, sub.Event())
			mu.Unlock()
		}
	}()
	defer func() { sub.Close(); <-done }()
	waitFor(ctx, t, "the subscription to start", func() bool { return sub.Cursor() != Newest && sub.opened.Load() == 1 })
	if sub.Cursor() != 20 {
		t.Fatalf("started after %d, want 20 (the newest cursor)", sub.Cursor())
	}
	if newest, err := c.NewestCursor(ctx); err != nil || newest != 20 {
		t.Fatalf("NewestCursor() = %d, %v; want 20", newest, err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	// The server dies before any event reached the subscriber; events commit on the new
	// server before the subscription is back.
	srv.kill()
	srv.start()
	upsertRetrying(ctx, t, c, batch("during", 10)) // cursors 21-30
	waitFor(ctx, t, "the 10 events written before the resume", func() bool { return count() >= 10 })
	upsertRetrying(ctx, t, c, batch("after", 10)) // cursors 31-40
	waitFor(ctx, t, "all 20 events", func() bool { return count() >= 20 })
	sub.Close()
	<-done
	if err := sub.Err(); err != nil {
		t.Fatalf("subscription ended with %v", err)
	}

	log := readLog(ctx, t, c)
	mu.Lock()
	defer mu.Unlock()
	if len(log) != 40 || len(got) != 20 {
		t.Fatalf("the log has %d events (want 40), the subscriber got %d (want 20)", len(log), len(got))
	}
	for i, e := range log[20:] {
		g := got[i]
		if g.Cursor != e.Cursor || g.Email != e.Email || g.Trigger != trigger || !g.At.Equal(e.At) {
			t.Fatalf("event %d: got %+v, the log has %+v", i, g, e)
		}
	}
	if sub.Resumes() < 1 {
		t.Fatalf("no resume after the restart")
	}
	t.Logf("live only: started after 20, resumed %d time(s): %s", sub.Resumes(), strings.Join(reasons, "; "))
}

// upsertRetrying upserts until the write is acknowledged, dialling again after a lost
// connection (upserts set state, so one that committed before the loss is harmless).
func upsertRetrying(ctx context.Context, t *testing.T, c *Client, contacts []map[string]any) {
	t.Helper()
	for {
		err := c.Call(ctx, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrConnLost) || ctx.Err() != nil {
			t.Fatalf("contacts.upsert: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("contacts.upsert: %v", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
