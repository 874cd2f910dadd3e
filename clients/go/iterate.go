package segmentd

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ending is what a Stream and a Subscription share about how they end, embedded in both:
// the consumer's context (parent) and the one Close cancels (ctx), the lock that Next
// holds while it works and Close takes to end it, and the error Err returns.
type ending struct {
	parent  context.Context
	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool // Close was called
	readMu  sync.Mutex  // held by Next and Close
	mu      sync.Mutex  // guards err (and a Stream's summary)
	err     error
	done    bool // ended: Next returns false
}

func (e *ending) begin(parent context.Context) {
	e.parent = parent
	e.ctx, e.cancel = context.WithCancel(parent)
}

// close is Close: it cancels ctx (which stops a Next that waits for the server), then
// takes the read lock and ends with end(nil) unless it ended already.
func (e *ending) close(end func(error)) error {
	e.closing.Store(true)
	e.cancel()
	e.readMu.Lock()
	defer e.readMu.Unlock()
	if !e.done {
		end(nil)
	}
	return nil
}

// setDone marks it ended and records why, which it returns: the parent context's error
// when that was cancelled, nil after Close, else err.
func (e *ending) setDone(err error) error {
	e.done = true
	switch {
	case e.parent.Err() != nil:
		err = e.parent.Err()
	case e.closing.Load():
		err = nil
	}
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
	return err
}

func (e *ending) loadErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// soloRequest is a request alone on a connection of its own (a Stream, one attempt of a
// Subscription), embedded in both: it reads the connection's messages and sends
// rpc.cancel once, when its context ends or it is asked to, after which the final reply
// is awaited for at most the cancel grace.
type soloRequest struct {
	cfg         *config
	rc          *rawConn
	id          int64
	final       bool // its final reply was read
	cancelOnce  sync.Once
	finished    chan struct{} // closed when the request is over: stops the watcher
	watcherDone chan struct{}
}

// send writes the request and, until stopWatching, sends rpc.cancel when ctx ends. The
// connection is closed when the request cannot be sent.
func (r *soloRequest) send(ctx context.Context, method string, params json.RawMessage) error {
	line := encodeRequest(r.id, method, params)
	if err := checkLine(method, line, r.rc.hello); err != nil {
		r.rc.nc.Close()
		return err
	}
	if _, err := r.rc.nc.Write(line); err != nil {
		r.rc.nc.Close()
		return &ConnError{Op: "write", Addr: r.cfg.address, Err: err}
	}
	r.finished = make(chan struct{})
	r.watcherDone = make(chan struct{})
	go r.watch(ctx)
	return nil
}

// watch sends rpc.cancel when ctx is cancelled (a cancelled context, or Close), and so
// bounds how long the request then waits for its final reply.
func (r *soloRequest) watch(ctx context.Context) {
	defer close(r.watcherDone)
	select {
	case <-ctx.Done():
		r.sendCancel()
	case <-r.finished:
	}
}

// stopWatching ends the watcher (after which ctx no longer cancels the request).
func (r *soloRequest) stopWatching() {
	close(r.finished)
	<-r.watcherDone
}

func (r *soloRequest) sendCancel() {
	r.cancelOnce.Do(func() {
		_ = r.rc.nc.SetWriteDeadline(time.Now().Add(r.cfg.cancelGrace))
		_, _ = r.rc.nc.Write(cancelLine(r.id))
		_ = r.rc.nc.SetReadDeadline(time.Now().Add(r.cfg.cancelGrace))
	})
}

// read returns the connection's next message. The request's reader waits for its final
// reply, so a connection that ends first is an error: every error is a *ConnError.
func (r *soloRequest) read() (*message, error) {
	m, err := readMessage(r.rc.br)
	if err != nil {
		if err == io.EOF {
			err = errEarlyEOF
		}
		return nil, &ConnError{Op: "read", Addr: r.cfg.address, Err: err}
	}
	return m, nil
}
