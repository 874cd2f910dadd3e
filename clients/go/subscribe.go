package segmentd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"sync/atomic"
	"time"
)

// SubscribeOptions configure Client.Subscribe.
type SubscribeOptions struct {
	// After is the cursor to start after: the last event the consumer handled (0: from
	// the first event of the log), or Newest for live only. A cursor older than what
	// retention kept, or newer than the newest event, ends the subscription with an
	// *Error (CodeInvalidParams) whose data says where to go on:
	// DataInt("resume_after") for a cursor retention passed (once retention has removed
	// any event the server refuses 0 as well), DataInt("newest_cursor") for one from the
	// future.
	After int64
	// Book names the book whose log to follow (default: the client's default book).
	Book string
	// Triggers, when not empty, limits the events to these triggers.
	Triggers []int64
	// Backoff spaces the attempts to subscribe again after a failure.
	Backoff Backoff
	// GiveUpAfter ends the subscription with the last error once attempts have failed
	// for this long without a success (0: never give up; the context still ends it).
	GiveUpAfter time.Duration
	// OnResume, if set, is called before each new attempt after a failure (from the
	// goroutine calling Next), with why the previous one ended and the wait before the
	// next. For logging and metrics; it must not block.
	OnResume func(ResumeInfo)
}

// Newest, as SubscribeOptions.After, subscribes live only: to the events that commit
// from the moment Subscribe is called. Subscribe reads the book's newest cursor
// (events.read's newest_cursor) and the subscription starts after it, so it knows where it
// started and resumes from there exactly, like any other cursor: an event that commits
// before the first Next, or while it reconnects, is not lost. (Only if the server cannot
// be reached when Subscribe is called does the first attempt read it, and Cursor return
// Newest until then.)
const Newest int64 = -1

// Backoff is an exponential backoff with jitter: the n-th consecutive failure waits
// Initial*Multiplier^(n-1), at most Max, minus a random part of up to Jitter of it. Zero
// fields take the defaults: Initial 100 ms, Max 5 s, Multiplier 2, Jitter 0.5 (a
// negative Jitter means none).
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = 2
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = 0.5
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// delay returns the wait before the attempt that follows the n-th consecutive failure
// (n >= 1); rnd supplies the jitter (nil: none).
func (b Backoff) delay(n int, rnd *rand.Rand) time.Duration {
	b = b.withDefaults()
	if n < 1 {
		n = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if rnd != nil {
		d -= d * b.Jitter * rnd.Float64()
	}
	return time.Duration(d)
}

// ResumeInfo tells SubscribeOptions.OnResume about a new attempt.
type ResumeInfo struct {
	Err     error         // why the previous attempt ended (or could not start)
	Attempt int           // consecutive failures so far (1 for the first retry)
	Delay   time.Duration // the wait before the next attempt
	After   int64         // the cursor it resumes after: the last event delivered (Newest: not read yet)
}

// Event is one trigger event (proto-docs/triggers.md).
type Event struct {
	Cursor  int64     `json:"cursor"`
	Trigger int64     `json:"trigger"`
	Segment int64     `json:"segment"`
	Email   string    `json:"email"`
	Type    string    `json:"type"` // "enter" or "exit"
	At      time.Time `json:"at"`
	Cause   string    `json:"cause"` // the method that caused it, or "clock"
	// Raw is the notification's params as received (they also hold the request id).
	Raw json.RawMessage `json:"-"`
}

// Subscription is the iterator of Client.Subscribe: every event of a book's log after a
// cursor, oldest first, then each new one as it commits.
//
//	sub, err := c.Subscribe(ctx, segmentd.SubscribeOptions{After: stored})
//	if err != nil { ... }
//	defer sub.Close()
//	for sub.Next() {
//		ev := sub.Event()
//		handle(ev)
//		stored = ev.Cursor
//	}
//	err = sub.Err()   // nil after Close; ctx.Err() when cancelled; or what cannot be resumed
//
// It resumes by itself, after the last event it delivered, whenever the subscription
// ends without the consumer asking: the connection is lost or the server restarts
// (attempts spaced by Backoff), the server ends it because the consumer read nothing
// for --subscriber-timeout (-32004), the server shuts down or the book is being dropped.
// So every event is delivered once, in cursor order, with no gap. What cannot be resumed
// without losing events ends it, returned by Err: events after the cursor were removed by
// retention (-32001, with DataInt("resume_after")), a cursor the server refuses (-32602:
// older than retention, with DataInt("resume_after"); from the future, with
// DataInt("newest_cursor")), an unknown book, a token without access. Resuming at
// resume_after skips the pruned events: that is the consumer's decision.
//
// Cancelling the context or calling Close ends it (sending rpc.cancel). Next and Event
// are for one goroutine; Close, Cursor and Resumes may be called from any.
type Subscription struct {
	ending // ctx, Close and Err
	cfg    *config
	book   string
	opts   SubscribeOptions

	opened atomic.Int64 // attempts that got a connection and sent the request
	cursor atomic.Int64 // the last event delivered

	att          *subAttempt
	ev           Event
	failures     int
	failingSince time.Time
	lastErr      error
	rnd          *rand.Rand
}

// Subscribe follows the event log of a book (events.subscribe) after opts.After (Newest:
// live only). The subscription's connection is opened by the first Next; errors come
// from Err. With Newest, Subscribe itself reads the newest cursor (on the client's
// connection), so the events that commit after Subscribe returns are delivered; an error
// that cannot be resumed (an unknown book, a token without access) is returned here.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscription, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if opts.After < 0 && opts.After != Newest {
		return nil, errors.New("segmentd: SubscribeOptions.After must be a cursor (0 or more) or Newest")
	}
	book := opts.Book
	if book == "" {
		book = c.cfg.book
	}
	opts.Backoff = opts.Backoff.withDefaults()
	s := &Subscription{
		cfg:  c.cfg,
		book: book,
		opts: opts,
		rnd:  rand.New(rand.NewSource(time.Now().UnixNano())),
	}
	s.cursor.Store(opts.After)
	if opts.After == Newest {
		// Live only from now: where the log ends when Subscribe is called, so that an
		// event committed before the first Next is delivered too. If the server cannot
		// be reached now (a resumable failure), the first attempt reads it instead.
		newest, err := c.NewestCursor(ctx, Book(book))
		switch {
		case err == nil:
			s.cursor.Store(newest)
		case ctx.Err() != nil:
			return nil, err
		case !resumable(err):
			return nil, err
		}
	}
	s.begin(ctx)
	return s, nil
}

// Event returns the event Next moved to.
func (s *Subscription) Event() Event { return s.ev }

// Cursor returns the cursor of the last event delivered (opts.After before the first;
// with Newest, the newest cursor when Subscribe was called): store it, and subscribe
// after it to continue where this one stopped.
func (s *Subscription) Cursor() int64 { return s.cursor.Load() }

// Resumes returns how many times the subscription has subscribed again (after a lost
// connection, a restart, a subscriber timeout, ...).
func (s *Subscription) Resumes() int {
	n := s.opened.Load() - 1
	if n < 0 {
		n = 0
	}
	return int(n)
}

// Err returns why the subscription ended: nil after Close, ctx.Err() after the context
// was cancelled, else an error that cannot be resumed without loss (see Subscription).
func (s *Subscription) Err() error { return s.loadErr() }

// Close ends the subscription (rpc.cancel, then at most the cancel grace for the final
// reply) and closes its connection. It may be called from another goroutine to stop a
// Next that waits, and more than once.
func (s *Subscription) Close() error { return s.close(s.end) }

// Next waits for the next event and reports whether there is one; false means the
// subscription ended (see Err).
func (s *Subscription) Next() bool {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for !s.done {
		if s.ctx.Err() != nil {
			s.end(nil)
			return false
		}
		if s.att == nil {
			if s.failures > 0 {
				if s.opts.GiveUpAfter > 0 && time.Since(s.failingSince) >= s.opts.GiveUpAfter {
					s.end(fmt.Errorf("segmentd: events.subscribe: gave up after failing for %v: %w", s.opts.GiveUpAfter, s.lastErr))
					return false
				}
				delay := s.opts.Backoff.delay(s.failures, s.rnd)
				if s.opts.OnResume != nil {
					s.opts.OnResume(ResumeInfo{Err: s.lastErr, Attempt: s.failures, Delay: delay, After: s.cursor.Load()})
				}
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
					continue
				}
			}
			att, err := s.open()
			if err != nil {
				if s.ctx.Err() != nil {
					continue
				}
				if !resumable(err) {
					s.end(err)
					return false
				}
				s.failed(nil, err)
				continue
			}
			s.att = att
		}
		ev, err := s.att.next()
		if s.ctx.Err() != nil {
			continue // ended by us: whatever came, it is over
		}
		if err != nil {
			a := s.att
			s.att = nil
			a.close(false)
			if !resumable(err) {
				s.end(err)
				return false
			}
			s.failed(a, err)
			continue
		}
		if ev.Cursor <= s.cursor.Load() {
			continue // never twice (the server does not send it again; belt and braces)
		}
		s.cursor.Store(ev.Cursor)
		s.failures = 0
		s.ev = *ev
		return true
	}
	return false
}

// ErrEndedByServer is why a subscription attempt ended when the server ended it with a
// result rather than an error (it was shutting down, or the book was being dropped); it
// is resumed. errors.Is(ResumeInfo.Err, ErrEndedByServer) tells it apart.
var ErrEndedByServer = errors.New("segmentd: the server ended the subscription")

// errEnded carries the final result of such an attempt.
type errEnded struct{ result json.RawMessage }

func (e *errEnded) Error() string { return ErrEndedByServer.Error() + ": " + string(e.result) }

func (e *errEnded) Unwrap() error { return ErrEndedByServer }

// resumable reports whether an attempt that ended with err can be followed by another
// without losing events.
func resumable(err error) bool {
	var ce *ConnError
	var ended *errEnded
	if errors.As(err, &ce) || errors.As(err, &ended) {
		return true // the connection failed, or the server ended it: nothing was lost
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case CodeOverloaded, CodeShuttingDown, CodeUnavailable, CodeCancelled:
			return true // "retry later" answers, and a cancellation we did not ask for
		}
	}
	return false
}

// failed records a failed attempt (a nil when none started). An attempt that stayed up
// longer than the longest backoff counts as a success, so the next wait starts short.
func (s *Subscription) failed(a *subAttempt, err error) {
	if a != nil && time.Since(a.started) > s.opts.Backoff.Max {
		s.failures = 0
	}
	if s.failures == 0 {
		s.failingSince = time.Now()
	}
	s.failures++
	s.lastErr = err
}

// end ends the subscription; err is the reason unless the consumer ended it.
func (s *Subscription) end(err error) {
	s.setDone(err)
	if s.att != nil {
		s.att.close(true)
		s.att = nil
	}
	s.cancel()
}

// subAttempt is one events.subscribe request on a connection of its own.
type subAttempt struct {
	soloRequest
	started time.Time
}

func (s *Subscription) open() (*subAttempt, error) {
	rc, err := dialRaw(s.ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	id := int64(1)
	if s.cursor.Load() == Newest {
		// Live only: where the log ends now, read on this connection before subscribing.
		newest, err := newestCursor(func(params map[string]any) (json.RawMessage, error) {
			raw, err := marshalParams(params, s.book, false)
			if err != nil {
				return nil, err
			}
			readID := id
			id++ // the subscription takes the next id
			return roundTrip(s.ctx, rc, s.cfg, readID, "events.read", raw)
		})
		if err != nil {
			rc.nc.Close()
			return nil, err
		}
		s.cursor.Store(newest)
	}
	params := map[string]any{"after": s.cursor.Load()}
	if len(s.opts.Triggers) > 0 {
		params["triggers"] = s.opts.Triggers
	}
	raw, err := marshalParams(params, s.book, false)
	if err != nil {
		rc.nc.Close()
		return nil, err
	}
	a := &subAttempt{soloRequest: soloRequest{cfg: s.cfg, rc: rc, id: id}, started: time.Now()}
	if err := a.send(s.ctx, "events.subscribe", raw); err != nil {
		return nil, err
	}
	s.opened.Add(1)
	return a, nil
}

// next returns the next event; an ended subscription is an error (an *Error, a
// *ConnError, or *errEnded for a result).
func (a *subAttempt) next() (*Event, error) {
	for {
		m, err := a.read()
		if err != nil {
			return nil, err
		}
		if m.Method == "events.event" {
			if id, ok := notificationID(m.Params); !ok || id != a.id {
				continue
			}
			ev := &Event{Raw: m.Params}
			if err := json.Unmarshal(m.Params, ev); err != nil {
				return nil, fmt.Errorf("segmentd: events.subscribe: undecodable event: %v", err)
			}
			return ev, nil
		}
		if m.isNullReply() {
			return nil, nullReplyErr(m, a.cfg.address)
		}
		if !m.isReply() {
			continue
		}
		if id, ok := m.intID(); !ok || id != a.id {
			continue
		}
		a.final = true
		if m.Error != nil {
			return nil, m.Error.toError("events.subscribe")
		}
		return nil, &errEnded{result: m.Result}
	}
}

// close ends the attempt; graceful sends rpc.cancel first and waits (at most the cancel
// grace) for the final reply, so the server ends the subscription cleanly.
func (a *subAttempt) close(graceful bool) {
	a.stopWatching()
	if graceful && !a.final {
		a.sendCancel()
		for !a.final {
			if _, err := a.next(); err != nil {
				break
			}
		}
	}
	a.rc.nc.Close()
}

// newestCursor returns the newest cursor of a log: events.read's newest_cursor. It reads
// from cursor 0; a log whose start retention pruned refuses that with data.resume_after,
// so it reads again from there (a few times at most: pruning runs on the server's clock).
func newestCursor(read func(params map[string]any) (json.RawMessage, error)) (int64, error) {
	after := int64(0)
	for attempt := 0; ; attempt++ {
		res, err := read(map[string]any{"after": after, "limit": 1})
		if err != nil {
			var e *Error
			if attempt < 3 && errors.As(err, &e) && e.Code == CodeInvalidParams && e.Path == "after" {
				if resumeAfter, ok := e.DataInt("resume_after"); ok && resumeAfter > after {
					after = resumeAfter
					continue
				}
			}
			return 0, err
		}
		var page struct {
			NewestCursor *int64 `json:"newest_cursor"`
		}
		if err := json.Unmarshal(res, &page); err != nil {
			return 0, fmt.Errorf("segmentd: events.read: decoding the result: %w", err)
		}
		if page.NewestCursor == nil {
			return 0, errors.New("segmentd: events.read returned no newest_cursor: this segmentd is older than the client")
		}
		return *page.NewestCursor, nil
	}
}

// NewestCursor returns the newest event cursor of a book (0 for an empty log), from
// events.read's newest_cursor. Subscribing after it delivers only the events that commit
// from now on (SubscribeOptions.After: Newest does this by itself).
func (c *Client) NewestCursor(ctx context.Context, opts ...CallOption) (int64, error) {
	return newestCursor(func(params map[string]any) (json.RawMessage, error) {
		var res json.RawMessage
		err := c.Call(ctx, "events.read", params, &res, opts...)
		return res, err
	})
}

// roundTrip sends one request on a connection nobody else reads yet and returns its
// result (an error reply as its *Error), bounded by ctx.
func roundTrip(ctx context.Context, rc *rawConn, cfg *config, id int64, method string, params json.RawMessage) (json.RawMessage, error) {
	line := encodeRequest(id, method, params)
	if err := checkLine(method, line, rc.hello); err != nil {
		return nil, err
	}
	stop := interruptOnDone(ctx, rc.nc.SetDeadline)
	defer stop()
	connErr := func(op string, err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return &ConnError{Op: op, Addr: cfg.address, Err: err}
	}
	if _, err := rc.nc.Write(line); err != nil {
		return nil, connErr("write", err)
	}
	for {
		m, err := readMessage(rc.br)
		if err != nil {
			if err == io.EOF {
				err = errEarlyEOF
			}
			return nil, connErr("read", err)
		}
		if m.isNullReply() {
			return nil, nullReplyErr(m, cfg.address)
		}
		if got, ok := m.intID(); !m.isReply() || !ok || got != id {
			continue
		}
		if m.Error != nil {
			return nil, m.Error.toError(method)
		}
		return m.Result, nil
	}
}
