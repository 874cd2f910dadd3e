package segmentd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Version is this client's version, sent in rpc.hello as part of "client".
const Version = "0.1.0"

// message is one line from the server: a reply (ID set, Result or Error) or a
// notification (Method set; stream notifications carry the request id in Params).
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *wireError      `json:"error"`
}

// isReply reports whether m is a reply (it has an "id" and no method).
func (m *message) isReply() bool { return m.Method == "" && len(m.ID) > 0 }

// isNullReply reports whether m is a reply with "id": null: the server's answer to a line
// it could not read (not JSON, too long, an invalid envelope). Nobody can tell which
// request it was, so it fails the whole connection (proto-docs/clients.md).
func (m *message) isNullReply() bool {
	return m.Method == "" && bytes.Equal(bytes.TrimSpace(m.ID), []byte("null"))
}

// nullReplyErr is the *ConnError a reply with id null fails a connection with; it wraps
// the server's *Error (errors.As finds it).
func nullReplyErr(m *message, addr string) error {
	var cause error = errors.New("the server answered a line it could not read (id null)")
	if m.Error != nil {
		cause = fmt.Errorf("the server could not read a request line (a reply with id null): %w", m.Error.toError(""))
	}
	return &ConnError{Op: "read", Addr: addr, Err: cause}
}

// intID returns the reply's id as an integer (ok false for null, strings and the like).
func (m *message) intID() (int64, bool) { return parseIntID(m.ID) }

func parseIntID(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || raw[0] == 'n' || raw[0] == '"' {
		return 0, false
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	return v, err == nil
}

// notificationID returns the request id a stream notification belongs to.
func notificationID(params json.RawMessage) (int64, bool) {
	var p struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(params, &p) != nil {
		return 0, false
	}
	return parseIntID(p.ID)
}

// encodeRequest returns one request line (with its "\n"). id < 0 makes a notification.
func encodeRequest(id int64, method string, params json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteString(`{"jsonrpc":"2.0",`)
	if id >= 0 {
		b.WriteString(`"id":`)
		b.WriteString(strconv.FormatInt(id, 10))
		b.WriteString(",")
	}
	b.WriteString(`"method":`)
	m, _ := json.Marshal(method)
	b.Write(m)
	b.WriteString(`,"params":`)
	b.Write(params)
	b.WriteString("}\n")
	return b.Bytes()
}

func cancelLine(id int64) []byte {
	return encodeRequest(-1, "rpc.cancel", json.RawMessage(`{"id":`+strconv.FormatInt(id, 10)+`}`))
}

// readLine reads one non-blank line (without its line end), however long.
func readLine(br *bufio.Reader) ([]byte, error) {
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if err == io.EOF && len(bytes.TrimSpace(line)) > 0 {
				return nil, io.ErrUnexpectedEOF // a partial line, then the end
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

// readMessage reads and decodes the next message. A batch reply (a JSON array) is
// returned as a message with no id and no method, which every reader ignores: this
// client never sends batches.
func readMessage(br *bufio.Reader) (*message, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if line[0] == '[' {
		return &message{}, nil
	}
	m := new(message)
	if err := json.Unmarshal(line, m); err != nil {
		return nil, fmt.Errorf("undecodable line from the server: %v", err)
	}
	return m, nil
}

// marshalParams turns params (nil, a struct, a map, json.RawMessage, ...) into a JSON
// object and sets "book" in it when book is not "". A book already in params must be
// the same book, unless book is only the client's default (byDefault): then the params'
// own book is kept.
func marshalParams(params any, book string, byDefault bool) (json.RawMessage, error) {
	var raw []byte
	var err error
	switch p := params.(type) {
	case nil:
		raw = []byte("{}")
	case json.RawMessage:
		if raw, err = compactRaw(p); err != nil {
			return nil, err
		}
	case []byte:
		if raw, err = compactRaw(p); err != nil {
			return nil, err
		}
	default:
		if raw, err = json.Marshal(params); err != nil {
			return nil, fmt.Errorf("segmentd: params: %w", err)
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return nil, errors.New("segmentd: params must be a JSON object (named params)")
	}
	if book == "" {
		return raw, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("segmentd: params: %w", err)
	}
	if old, ok := obj["book"]; ok && !bytes.Equal(old, []byte("null")) {
		var name string
		if byDefault || (json.Unmarshal(old, &name) == nil && name == book) {
			return raw, nil
		}
		return nil, fmt.Errorf("segmentd: params name book %s but the call is for book %q", old, book)
	}
	obj["book"], _ = json.Marshal(book)
	return json.Marshal(obj)
}

// compactRaw checks params given as raw JSON and compacts them: they become part of one
// request line, so invalid JSON or a line break (json.MarshalIndent) would make the
// server answer with id null.
func compactRaw(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, errors.New("segmentd: params: invalid JSON")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, fmt.Errorf("segmentd: params: %w", err)
	}
	return b.Bytes(), nil
}

// bookScoped reports whether a method takes the "book" param: every method but rpc.*,
// books.* and server.stats (proto-docs/books.md, "The book param").
func bookScoped(method string) bool {
	return !strings.HasPrefix(method, "rpc.") && !strings.HasPrefix(method, "books.") && method != "server.stats"
}

// checkLine refuses a request line the server would discard unread: it would answer it
// with id null, which no caller could match, so the call would never end.
func checkLine(method string, line []byte, h *Hello) error {
	if max := h.Limits.MaxLineBytes; len(line)-1 > max {
		return &Error{Method: method, Code: CodeTooLarge, Type: "too_large",
			Message: fmt.Sprintf("the request is %d bytes, more than the server's max_line_bytes (%d): send it in parts", len(line)-1, max),
			Data:    map[string]any{"type": "too_large", "max_line_bytes": json.Number(strconv.Itoa(max))}}
	}
	return nil
}

// Hello is what rpc.hello answered on a connection.
type Hello struct {
	Server     string `json:"server"`
	Version    string `json:"version"`
	Protocol   string `json:"protocol"`
	Transport  string `json:"transport"` // "unix" or "tcp"
	Connection int64  `json:"connection"`
	Limits     Limits `json:"limits"`
	// Raw is the whole result (dimensions, books, storage, ...).
	Raw json.RawMessage `json:"-"`
}

// Limits are the server's per-connection limits (proto-docs/transport.md).
type Limits struct {
	MaxLineBytes    int   `json:"max_line_bytes"`
	MaxBatch        int   `json:"max_batch"`
	MaxInFlight     int   `json:"max_in_flight"`
	MaxConnections  int   `json:"max_connections"`
	IdleTimeoutMS   int64 `json:"idle_timeout_ms"`
	LineTimeoutMS   int64 `json:"line_timeout_ms"`
	MaxFailedHellos int   `json:"max_failed_hellos"`
}

// config is what a Client dials with; streams and subscriptions dial with it too.
type config struct {
	network, address string
	token            string
	book             string
	clientName       string
	dialTimeout      time.Duration
	cancelGrace      time.Duration
}

// String describes the config without its token.
func (c config) String() string {
	token := ""
	if c.token != "" {
		token = "[redacted]"
	}
	return fmt.Sprintf("{network:%s address:%s token:%s book:%q clientName:%q dialTimeout:%v cancelGrace:%v}",
		c.network, c.address, token, c.book, c.clientName, c.dialTimeout, c.cancelGrace)
}

// Format prints String for every verb (%v, %+v, %#v, %s), so the token never shows.
func (c config) Format(f fmt.State, verb rune) { _, _ = io.WriteString(f, c.String()) }

// String describes the client (its address and default book; never the token).
func (c *Client) String() string {
	return fmt.Sprintf("segmentd.Client(%s:%s book %q)", c.cfg.network, c.cfg.address, c.cfg.book)
}

// Option configures a Client (Dial, DialUnix, DialTCP).
type Option func(*config)

// WithToken sets the token sent in rpc.hello. Required on TCP; ignored by the server on
// the Unix socket.
func WithToken(token string) Option { return func(c *config) { c.token = token } }

// WithBook sets the client's default book: calls of book-scoped methods that name no
// book (neither in their params nor with the Book call option) go to it. Without it they
// go to the server's "default" book.
func WithBook(name string) Option { return func(c *config) { c.book = name } }

// WithClientName sets the "client" sent in rpc.hello (it appears in the server's logs).
func WithClientName(name string) Option { return func(c *config) { c.clientName = name } }

// WithDialTimeout bounds opening a connection and its rpc.hello (default 10 s; the
// context's deadline applies too).
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithCancelGrace bounds how long a cancelled or closed stream waits for its final reply
// after sending rpc.cancel before it closes its connection anyway (default 5 s).
func WithCancelGrace(d time.Duration) Option { return func(c *config) { c.cancelGrace = d } }

// parseAddress turns "unix:/path", "unix:///path", "tcp:host:port", "tcp://host:port",
// a path (containing "/" or ending in ".sock") or "host:port" into a network and address.
func parseAddress(addr string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		network, address = "unix", strings.TrimPrefix(addr, "unix:")
		if strings.HasPrefix(address, "//") {
			address = address[2:]
		}
	case strings.HasPrefix(addr, "tcp:"):
		network, address = "tcp", strings.TrimPrefix(strings.TrimPrefix(addr, "tcp:"), "//")
	case strings.Contains(addr, "/") || strings.HasSuffix(addr, ".sock"):
		network, address = "unix", addr
	default:
		network, address = "tcp", addr
	}
	if address == "" {
		return "", "", fmt.Errorf("segmentd: no address in %q", addr)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("segmentd: address %q: %v", addr, err)
		}
	}
	return network, address, nil
}

// interruptOnDone makes the connection's blocked I/O return when ctx ends, by setting a
// deadline in the past with setDeadline (a net.Conn's SetDeadline, SetWriteDeadline, ...).
// Calling the stop it returns ends the watch and clears that deadline if it was set.
func interruptOnDone(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	stopped := make(chan struct{})
	fired := make(chan bool, 1)
	go func() {
		select {
		case <-ctx.Done():
			_ = setDeadline(time.Unix(1, 0))
			fired <- true
		case <-stopped:
			fired <- false
		}
	}()
	return func() {
		close(stopped)
		if <-fired {
			_ = setDeadline(time.Time{})
		}
	}
}

// rawConn is one connection after its rpc.hello, before anyone reads from it.
type rawConn struct {
	nc    net.Conn
	br    *bufio.Reader
	hello *Hello
}

// dialRaw opens a connection and says hello on it (id 0). Errors are *ConnError, or the
// *Error the server answered rpc.hello with (a wrong token).
func dialRaw(ctx context.Context, cfg *config) (*rawConn, error) {
	if cfg.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.dialTimeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, cfg.network, cfg.address)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &ConnError{Op: "dial", Addr: cfg.address, Err: err}
	}
	// Bound the hello by the context: its deadline, and its cancellation.
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			_ = nc.SetDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	fail := func(op string, err error) (*rawConn, error) {
		nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &ConnError{Op: op, Addr: cfg.address, Err: err}
	}
	params := map[string]string{"client": cfg.clientName}
	if cfg.token != "" {
		params["token"] = cfg.token
	}
	raw, _ := json.Marshal(params)
	if _, err := nc.Write(encodeRequest(0, "rpc.hello", raw)); err != nil {
		return fail("hello", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	for {
		m, err := readMessage(br)
		if err != nil {
			if err == io.EOF {
				err = errEarlyEOF
			}
			return fail("hello", err)
		}
		if !m.isReply() {
			continue
		}
		if m.isNullReply() { // "too many connections", or a hello the server could not read
			return fail("hello", nullReplyErr(m, cfg.address).(*ConnError).Err)
		}
		if id, ok := m.intID(); !ok || id != 0 {
			continue
		}
		if m.Error != nil {
			nc.Close()
			return nil, m.Error.toError("rpc.hello")
		}
		h := &Hello{Raw: m.Result}
		if err := json.Unmarshal(m.Result, h); err != nil {
			return fail("hello", fmt.Errorf("undecodable rpc.hello result: %v", err))
		}
		if h.Limits.MaxInFlight <= 0 {
			h.Limits.MaxInFlight = 32
		}
		if h.Limits.MaxLineBytes <= 0 {
			h.Limits.MaxLineBytes = 1 << 20
		}
		// Ours from here on: no deadlines until someone sets one.
		select {
		case stop <- struct{}{}: // the watcher is gone (it did not fire)
		case <-ctx.Done():
			return fail("hello", ctx.Err())
		}
		_ = nc.SetDeadline(time.Time{})
		return &rawConn{nc: nc, br: br, hello: h}, nil
	}
}

func defaultClientName() string {
	name := "segmentd-go/" + Version
	if exe, err := os.Executable(); err == nil {
		name += " (" + baseName(exe) + ")"
	}
	return name
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
