package segmentd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Client is a connection to a segmentd server, safe for concurrent use by many
// goroutines: calls share one connection and are matched to their replies by id, with at
// most the server's max_in_flight in flight at once (further calls wait for a slot).
//
// When the connection is lost (the server restarted, say), the calls in flight on it
// fail with a *ConnError and the next call dials again (and says hello again): calls are
// never retried by the client, because the server may have run them.
//
// Streams ([Client.Resolve], [Client.Export]) and subscriptions ([Client.Subscribe]) dial a
// connection of their own with the same settings.
type Client struct {
	cfg *config // a pointer: printing a Client (%+v) shows no token

	mu      sync.Mutex
	cur     *muxConn
	dialing *dialResult
	closed  bool
}

type dialResult struct {
	done chan struct{}
	m    *muxConn
	err  error
	// abandoned: it failed because the context of the call that dialled ended (not the
	// dial timeout, not the server): the calls waiting for it dial again.
	abandoned bool
}

// Dial connects to the server at addr and says hello. addr is "unix:/path/to/segmentd.sock"
// or "tcp:127.0.0.1:7070" (a bare path or host:port works too). On TCP pass WithToken;
// a wrong token fails here with an *Error of code CodeUnauthorized.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	network, address, err := parseAddress(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: &config{network: network, address: address, dialTimeout: 10 * time.Second, cancelGrace: 5 * time.Second}}
	for _, o := range opts {
		o(c.cfg)
	}
	if c.cfg.clientName == "" {
		c.cfg.clientName = defaultClientName()
	}
	if _, err := c.conn(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// DialUnix connects to the server's Unix socket at path (see Dial).
func DialUnix(path string, opts ...Option) (*Client, error) {
	return Dial(context.Background(), "unix:"+path, opts...)
}

// DialTCP connects to the server's TCP address ("127.0.0.1:7070") with a token (see Dial).
func DialTCP(address, token string, opts ...Option) (*Client, error) {
	return Dial(context.Background(), "tcp:"+address, append([]Option{WithToken(token)}, opts...)...)
}

// Close closes the client's connection: calls in flight fail with a *ConnError (which
// makes the server cancel them) and later calls return ErrClosed. Streams and
// subscriptions opened from the client are not affected; close them on their own.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	m := c.cur
	c.cur = nil
	c.mu.Unlock()
	if m != nil {
		m.fail(&ConnError{Op: "read", Addr: c.cfg.address, Err: ErrClosed})
	}
	return nil
}

// Hello returns what the server answered rpc.hello on the current connection (nil
// when there is none).
func (c *Client) Hello() *Hello {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.cur.hello
}

// Book returns the client's default book ("" for the server's default).
func (c *Client) Book() string { return c.cfg.book }

// CallOption configures one call.
type CallOption func(*callConfig)

type callConfig struct {
	book    string
	bookSet bool
}

// Book sends the call to the named book (overriding the client's default book). It is an
// error to also name another book in the params.
func Book(name string) CallOption {
	return func(c *callConfig) { c.book, c.bookSet = name, true }
}

// bookFor decides which book a call names: the Book option, else explicit (a book given
// in typed params), else the client's default for book-scoped methods (byDefault: a book
// named in the params themselves wins over it), else none ("" leaves params as they are).
func (c *Client) bookFor(method string, explicit string, opts []CallOption) (book string, byDefault bool) {
	var cc callConfig
	for _, o := range opts {
		o(&cc)
	}
	switch {
	case cc.bookSet:
		return cc.book, false
	case explicit != "":
		return explicit, false
	case bookScoped(method):
		return c.cfg.book, true
	}
	return "", false
}

// Call sends a request and waits for its reply, decoding the result into result (a
// pointer; nil discards it; *json.RawMessage keeps it as it is). params is anything that
// marshals to a JSON object: nil, a struct, a map, a json.RawMessage.
//
// An error reply is returned as an *Error; a connection that fails before the reply as a
// *ConnError; a cancelled ctx as ctx.Err() (wrapped), after sending rpc.cancel for the
// request. Streaming methods are for Resolve, Export and Subscribe: Call ignores their
// notifications (and an events.subscribe call would only end when cancelled).
func (c *Client) Call(ctx context.Context, method string, params, result any, opts ...CallOption) error {
	book, byDefault := c.bookFor(method, "", opts)
	raw, err := marshalParams(params, book, byDefault)
	if err != nil {
		return err
	}
	var res json.RawMessage
	for attempt := 0; ; attempt++ {
		m, err := c.conn(ctx)
		if err != nil {
			return err
		}
		if testHookBeforeCall != nil {
			testHookBeforeCall(m)
		}
		res, err = m.call(ctx, method, raw)
		var unsent *unsentError
		if errors.As(err, &unsent) {
			// The connection died (retired for idleness by another call, say) before
			// anything of this request was written: nothing ran, so dial again, once.
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			err = unsent.err
		}
		if err != nil {
			return err
		}
		break
	}
	if result == nil {
		return nil
	}
	if rm, ok := result.(*json.RawMessage); ok {
		*rm = append((*rm)[:0], res...)
		return nil
	}
	if err := json.Unmarshal(res, result); err != nil {
		return fmt.Errorf("segmentd: %s: decoding the result: %w", method, err)
	}
	return nil
}

// conn returns the current connection, dialling one when there is none or it was lost.
// Concurrent callers share one dial.
func (c *Client) conn(ctx context.Context) (*muxConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if m := c.cur; m != nil && m.usable() {
		c.mu.Unlock()
		return m, nil
	}
	if d := c.dialing; d != nil {
		c.mu.Unlock()
		select {
		case <-d.done:
			if d.abandoned && ctx.Err() == nil {
				return c.conn(ctx) // that dial was given up by its caller, not by this one
			}
			return d.m, d.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	old := c.cur
	c.cur = nil
	d := &dialResult{done: make(chan struct{})}
	c.dialing = d
	c.mu.Unlock()
	if old != nil {
		old.fail(&ConnError{Op: "read", Addr: c.cfg.address, Err: errors.New("connection retired after being idle")})
	}

	rc, err := dialRaw(ctx, c.cfg)
	if err == nil {
		d.m = newMuxConn(rc, c.cfg)
	}
	d.err = err
	// A dial that timed out (WithDialTimeout) or was refused fails its waiters too:
	// dialling again one after another would make the last wait for every timeout.
	d.abandoned = err != nil && ctx.Err() != nil

	c.mu.Lock()
	c.dialing = nil
	if d.m != nil {
		if c.closed {
			d.m.fail(&ConnError{Op: "read", Addr: c.cfg.address, Err: ErrClosed})
			d.m, d.err = nil, ErrClosed
		} else {
			c.cur = d.m
		}
	}
	c.mu.Unlock()
	close(d.done)
	return d.m, d.err
}

// muxConn is one connection shared by many calls, with a goroutine reading replies.
type muxConn struct {
	cfg   *config
	nc    net.Conn
	hello *Hello
	wlock chan struct{} // holds a token while a line is being written
	slots chan struct{} // one token per request in flight (max_in_flight)
	done  chan struct{} // closed when the connection is dead

	mu         sync.Mutex
	pending    map[int64]chan reply
	nextID     int64
	err        error // why it is dead
	lastActive time.Time
}

type reply struct {
	result json.RawMessage
	err    error
}

func newMuxConn(rc *rawConn, cfg *config) *muxConn {
	m := &muxConn{
		cfg:        cfg,
		nc:         rc.nc,
		hello:      rc.hello,
		wlock:      make(chan struct{}, 1),
		slots:      make(chan struct{}, rc.hello.Limits.MaxInFlight),
		done:       make(chan struct{}),
		pending:    make(map[int64]chan reply),
		nextID:     1,
		lastActive: time.Now(),
	}
	go m.readLoop(rc.br)
	return m
}

// usable reports whether new calls may use the connection: it is alive and not about to
// be closed by the server for idleness (the server closes a connection with nothing in
// flight after idle_timeout_ms; a request sent just then would be lost, so a connection
// idle for most of that time is replaced instead).
func (m *muxConn) usable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false
	}
	idle := time.Duration(m.hello.Limits.IdleTimeoutMS) * time.Millisecond
	return idle <= 0 || len(m.pending) > 0 || time.Since(m.lastActive) < idle*8/10
}

// fail marks the connection dead: every pending call gets err, and it is closed.
func (m *muxConn) fail(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	close(m.done)
	for id, ch := range m.pending {
		delete(m.pending, id)
		ch <- reply{err: err}
		<-m.slots
	}
	m.mu.Unlock()
	m.nc.Close()
}

func (m *muxConn) deadErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *muxConn) readLoop(br *bufio.Reader) {
	for {
		msg, err := readMessage(br)
		if err != nil {
			if err == io.EOF {
				err = errEarlyEOF
			}
			m.fail(&ConnError{Op: "read", Addr: m.cfg.address, Err: err})
			return
		}
		if !msg.isReply() {
			continue // a notification: no stream runs on this connection
		}
		if msg.isNullReply() {
			// A reply to a line the server could not read: no call can be matched to it,
			// so every call on the connection fails now rather than waiting forever.
			m.fail(nullReplyErr(msg, m.cfg.address))
			return
		}
		id, ok := msg.intID()
		m.mu.Lock()
		m.lastActive = time.Now()
		if !ok {
			m.mu.Unlock()
			continue // not an id this client sent
		}
		ch, found := m.pending[id]
		if found {
			delete(m.pending, id)
			<-m.slots
		}
		m.mu.Unlock()
		if !found {
			continue // a call given up on (cancelled) gets its reply late
		}
		if msg.Error != nil {
			ch <- reply{err: msg.Error} // converted by the caller, which knows the method
		} else {
			ch <- reply{result: msg.Result}
		}
	}
}

// call sends one request and waits for its reply.
func (m *muxConn) call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil { // a select would pick a free slot half the time
		return nil, fmt.Errorf("segmentd: %s: %w", method, err)
	}
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("segmentd: %s: %w", method, ctx.Err())
	case <-m.done:
		return nil, &unsentError{m.deadErr()}
	}
	ch := make(chan reply, 1)
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		<-m.slots
		return nil, &unsentError{err}
	}
	id := m.nextID
	m.nextID++
	m.pending[id] = ch
	m.lastActive = time.Now()
	m.mu.Unlock()

	line := encodeRequest(id, method, params)
	if err := checkLine(method, line, m.hello); err != nil {
		m.forget(id)
		return nil, err
	}
	if sent, err := m.write(ctx, line); err != nil {
		if sent {
			// ctx ended while the line was being written, and it was finished: the
			// request is on its way, so it is cancelled like one already sent (its reply
			// frees the slot).
			go m.sendCancel(id)
			return nil, fmt.Errorf("segmentd: %s: %w", method, err)
		}
		m.forget(id)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("segmentd: %s: %w", method, ctx.Err())
		}
		var dead *deadBeforeWrite
		if errors.As(err, &dead) {
			return nil, &unsentError{dead.err}
		}
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			if we, ok := r.err.(*wireError); ok {
				return nil, we.toError(method)
			}
			return nil, r.err
		}
		return r.result, nil
	case <-ctx.Done():
		// The reply will still come (-32800 or the result); readLoop drops it and frees
		// the slot then.
		go m.sendCancel(id)
		return nil, fmt.Errorf("segmentd: %s: %w", method, ctx.Err())
	}
}

// testHookBeforeCall, when set by a test, runs in Call between getting the connection and
// using it.
var testHookBeforeCall func(*muxConn)

// unsentError is what call returns when its request was not written at all because the
// connection was already dead; Call dials again once, and never returns it.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }

// deadBeforeWrite is what write returns when the connection was dead before it wrote
// anything.
type deadBeforeWrite struct{ err error }

func (e *deadBeforeWrite) Error() string { return e.err.Error() }

// Error makes *wireError an error so that it can travel in a reply.
func (w *wireError) Error() string { return w.Message }

// forget removes a call that was never (completely) sent.
func (m *muxConn) forget(id int64) {
	m.mu.Lock()
	if _, ok := m.pending[id]; ok {
		delete(m.pending, id)
		<-m.slots
	}
	m.mu.Unlock()
}

func (m *muxConn) sendCancel(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.cancelGrace)
	defer cancel()
	_, _ = m.write(ctx, cancelLine(id))
}

// write writes one whole line and reports whether it was sent whole. A ctx that ends
// before the first byte is written abandons the line (ctx.Err(), not sent) and leaves the
// connection usable. Once a byte is out, the line is finished whatever ctx does (a line
// cut short would break every call on the connection), bounded by the server's line
// timeout; if ctx ended meanwhile, write returns ctx.Err() with sent true. A write that
// fails otherwise ends the connection.
func (m *muxConn) write(ctx context.Context, line []byte) (sent bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	select {
	case m.wlock <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-m.done:
		return false, &deadBeforeWrite{m.deadErr()}
	}
	defer func() { <-m.wlock }()
	if err := m.deadErr(); err != nil {
		return false, &deadBeforeWrite{err}
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var n int
	if ctx.Done() != nil {
		stop := interruptOnDone(ctx, m.nc.SetWriteDeadline)
		n, err = m.nc.Write(line)
		stop() // clears the deadline if it was set
	} else {
		n, err = m.nc.Write(line)
	}
	if err == nil {
		return true, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if n == 0 {
			return false, ctxErr
		}
		// Part of the line is out: finish it, bounded by a limit of its own.
		_ = m.nc.SetWriteDeadline(time.Now().Add(m.lineLimit()))
		_, err = m.nc.Write(line[n:])
		_ = m.nc.SetWriteDeadline(time.Time{})
		if err == nil {
			return true, ctxErr
		}
	}
	cerr := &ConnError{Op: "write", Addr: m.cfg.address, Err: err}
	m.fail(cerr)
	return false, cerr
}

// lineLimit bounds finishing a line whose caller gave up part-way: the server's
// line_timeout_ms (it drops a connection whose line takes longer anyway), at least
// 10 s, and 30 s when it announces none.
func (m *muxConn) lineLimit() time.Duration {
	d := time.Duration(m.hello.Limits.LineTimeoutMS) * time.Millisecond
	if d <= 0 {
		return 30 * time.Second
	}
	if d < 10*time.Second {
		d = 10 * time.Second
	}
	return d
}
