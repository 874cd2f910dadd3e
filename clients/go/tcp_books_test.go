package segmentd

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TCP needs the token: the right one works (calls, streams, subscriptions), a wrong one
// is a typed error. Books keep their data apart, by option or by client default.
func TestTCPTokenAndBooks(t *testing.T) {
	const token = "tok-0123456789abcdef"
	srv := startServer(t, serverOptions{tcp: true, token: token})
	ctx := testCtx(t, 30*time.Second)

	t.Run("wrong token", func(t *testing.T) {
		for _, tok := range []string{"wrong-token-0123456789", ""} {
			_, err := Dial(ctx, "tcp:"+srv.tcp, WithToken(tok))
			e := asError(t, err)
			if e.Code != CodeUnauthorized || e.Type != "unauthorized" || !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("token %q: %v", tok, err)
			}
		}
	})

	c, err := Dial(ctx, "tcp:"+srv.tcp, WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h := c.Hello(); h == nil || h.Transport != "tcp" || h.Server != "segmentd" || h.Limits.MaxInFlight <= 0 {
		t.Fatalf("hello: %+v", h)
	}

	var created struct{ Name, State string }
	mustCall(ctx, t, c, "books.create", map[string]any{"name": "acme"}, &created)
	if created.Name != "acme" || created.State != "ready" {
		t.Fatalf("books.create: %+v", created)
	}
	// A client whose default book is acme; books.* and rpc.* are not sent a book.
	acme, err := Dial(ctx, "tcp:"+srv.tcp, WithToken(token), WithBook("acme"))
	if err != nil {
		t.Fatal(err)
	}
	defer acme.Close()
	var books struct{ Books []struct{ Name string } }
	mustCall(ctx, t, acme, "books.list", nil, &books)
	mustCall(ctx, t, acme, "rpc.ping", nil, nil)
	_, trigger := vipSegment(ctx, t, acme, []string{"enter"})

	sub, err := acme.Subscribe(ctx, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustCall(ctx, t, acme, "contacts.upsert", map[string]any{"contacts": []map[string]any{
		{"email": "ana@acme.example", "labels": []string{"vip"}}, {"email": "budi@acme.example"}}}, nil)
	mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": []map[string]any{
		{"email": "zed@default.example", "labels": []string{"vip"}}}}, nil) // the default book

	type count struct{ Total int }
	var inAcme, inDefault, viaOption count
	mustCall(ctx, t, acme, "contacts.count", nil, &inAcme)
	mustCall(ctx, t, c, "contacts.count", nil, &inDefault)
	mustCall(ctx, t, acme, "contacts.count", nil, &viaOption, Book("default"))
	if inAcme.Total != 2 || inDefault.Total != 1 || viaOption.Total != 1 {
		t.Fatalf("counts: acme %d, default %d, default via Book option %d", inAcme.Total, inDefault.Total, viaOption.Total)
	}
	if err := acme.Call(ctx, "contacts.count", map[string]any{"book": "default"}, nil, Book("acme")); err == nil {
		t.Fatal("two different books in one call must be refused")
	}
	var viaParams count
	mustCall(ctx, t, acme, "contacts.count", map[string]any{"book": "default"}, &viaParams) // params beat the client default
	if viaParams.Total != 1 {
		t.Fatalf("book in params: %d contacts", viaParams.Total)
	}
	if e := asError(t, c.Call(ctx, "contacts.count", nil, nil, Book("acmee"))); e.Code != CodeNotFound {
		t.Fatalf("unknown book: %v", e)
	}

	// The stream of acme's segment 1 holds acme's contact; the default book has no segment.
	s, err := acme.Resolve(ctx, StreamParams{ID: 1, Format: "csv", Compress: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for s.Next() {
		lines = append(lines, s.Line())
	}
	if s.Err() != nil || len(lines) != 2 || lines[1] != "ana@acme.example,,active" {
		t.Fatalf("acme resolve: %q %v", lines, s.Err())
	}
	s, err = c.Resolve(ctx, StreamParams{ID: 1, Book: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for s.Next() {
	}
	if !errors.Is(s.Err(), ErrNotFound) {
		t.Fatalf("default book resolve of segment 1: %v", s.Err())
	}

	// The subscription (over TCP, to acme) sees acme's event only.
	if !sub.Next() {
		t.Fatalf("subscription: %v", sub.Err())
	}
	if ev := sub.Event(); ev.Email != "ana@acme.example" || ev.Type != "enter" || ev.Trigger != trigger || ev.Cursor != 1 {
		t.Fatalf("event %+v", ev)
	}

	t.Run("many calls in flight on one connection", func(t *testing.T) {
		conn := c.Hello().Connection
		max := c.Hello().Limits.MaxInFlight
		var wg sync.WaitGroup
		errs := make(chan error, 8*max)
		for i := 0; i < 8*max; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				var r struct{ Total int }
				book := map[bool]string{true: "acme", false: "default"}[i%2 == 0]
				if err := c.Call(ctx, "contacts.count", nil, &r, Book(book)); err != nil {
					errs <- err
				} else if want := map[string]int{"acme": 2, "default": 1}[book]; r.Total != want {
					errs <- fmt.Errorf("%s: %d contacts, want %d", book, r.Total, want)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err) // a -32004 here would mean the client overran max_in_flight
		}
		if c.Hello().Connection != conn {
			t.Fatal("the calls did not share one connection")
		}
	})
}
