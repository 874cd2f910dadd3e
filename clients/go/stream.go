package segmentd

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Filter is one filter of a rule, as in proto-docs/segments.md:
//
//	segmentd.Filter{"dimension": "label", "op": "contains", "value": "vip"}
//	segmentd.Filter{"any": []segmentd.Filter{...}}
type Filter map[string]any

// StreamParams are the params of segments.resolve and of segments.export without a path
// (proto-docs/streams.md). Give ID or Filters. Zero values are left out, so the server's
// defaults apply (audience "send", columns email/name/status, format "ndjson").
//
// The JSON names are the protocol's, so params written as JSON decode into it
// (json.Unmarshal; with json.Decoder.DisallowUnknownFields a misspelt member is an error),
// and it marshals to the params it stands for.
type StreamParams struct {
	// Book names the book (overrides the client's default book).
	Book string `json:"book,omitempty"`
	// ID is a stored segment's id.
	ID int64 `json:"id,omitempty"`
	// Filters is a rule given inline; a non-nil empty slice is sent as [] (everyone).
	Filters []Filter `json:"filters,omitempty"`
	// Audience is "send" (the default) or "all".
	Audience string `json:"audience,omitempty"`
	// Columns are the columns of each row (default email, name, status).
	Columns []string `json:"columns,omitempty"`
	// Format is "ndjson" (the default: Row gives each row as a JSON object) or "csv"
	// (Line gives each CSV record, the header first).
	Format string `json:"format,omitempty"`
	// Compress "gzip" has the server send one gzip stream, decoded by the Stream: rows
	// read the same with or without it.
	Compress string `json:"compress,omitempty"`
	// BatchSize is the number of rows per notification (1 to 10,000; default 1,000).
	BatchSize int `json:"batch_size,omitempty"`
}

// MarshalJSON encodes the params as they are sent (an empty non-nil Filters as []).
func (p StreamParams) MarshalJSON() ([]byte, error) {
	o := p.object()
	if p.Book != "" {
		o["book"] = p.Book
	}
	return json.Marshal(o)
}

func (p StreamParams) object() map[string]any {
	o := map[string]any{}
	if p.ID != 0 {
		o["id"] = p.ID
	}
	if p.Filters != nil {
		o["filters"] = p.Filters
	}
	if p.Audience != "" {
		o["audience"] = p.Audience
	}
	if p.Columns != nil {
		o["columns"] = p.Columns
	}
	if p.Format != "" {
		o["format"] = p.Format
	}
	if p.Compress != "" {
		o["compress"] = p.Compress
	}
	if p.BatchSize != 0 {
		o["batch_size"] = p.BatchSize
	}
	return o
}

// StreamSummary is a stream's final reply.
type StreamSummary struct {
	Rows     int64     `json:"rows"`     // rows sent (the CSV header not counted)
	AsOf     time.Time `json:"as_of"`    // when the snapshot was taken
	Version  int64     `json:"version"`  // the book's version the rows describe
	Format   string    `json:"format"`   // "ndjson" or "csv"
	Columns  []string  `json:"columns"`  // the columns of each row
	Compress string    `json:"compress"` // "gzip" or ""
	// Complete is false when the stream was cancelled after Rows rows.
	Complete bool `json:"complete"`
	// Raw is the whole result.
	Raw json.RawMessage `json:"-"`
}

// Stream is the iterator of a segments.resolve or segments.export stream:
//
//	s, err := c.Resolve(ctx, segmentd.StreamParams{ID: 1})
//	if err != nil { ... }
//	defer s.Close()
//	for s.Next() {
//		fmt.Println(string(s.Row()))
//	}
//	if err := s.Err(); err != nil { ... }   // an *Error, a *ConnError, a gzip error, ctx.Err()
//
// An error reply (an unknown segment, a bad column) ends the iteration at once and is
// returned by Err; so is a connection that ends before the final reply, and a gzip
// stream that is truncated or corrupt. Next never waits for a reply that cannot come.
//
// Cancelling the context, or calling Close, sends rpc.cancel; the stream then ends after
// the server's final reply (Summary().Complete false) or after the cancel grace.
// Next, Row, Line and friends are for one goroutine; Close may be called from any.
type Stream struct {
	ending      // ctx, Close and Err
	soloRequest // the request on the stream's connection
	method      string
	csv         bool
	gzip        bool

	rows    []json.RawMessage
	src     *chunkSource
	text    *bufio.Reader
	row     json.RawMessage
	line    []byte
	n       int64
	summary *StreamSummary // guarded by mu, for Summary
	srvErr  *Error
}

// Resolve streams the rows of a segment (segments.resolve). The error is for what fails
// before the request is sent (bad params, no connection); what the server answers comes
// through Next and Err.
func (c *Client) Resolve(ctx context.Context, params StreamParams, opts ...CallOption) (*Stream, error) {
	return c.stream(ctx, "segments.resolve", params, opts)
}

// Export streams the rows of a segment like Resolve, with segments.export (its streaming
// form; an export to a file, with "path", is a plain Call).
func (c *Client) Export(ctx context.Context, params StreamParams, opts ...CallOption) (*Stream, error) {
	return c.stream(ctx, "segments.export", params, opts)
}

func (c *Client) stream(ctx context.Context, method string, params StreamParams, opts []CallOption) (*Stream, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	book, byDefault := c.bookFor(method, params.Book, opts)
	obj := params.object()
	if params.Book != "" {
		obj["book"] = params.Book // so that a different Book option is refused
	}
	raw, err := marshalParams(obj, book, byDefault)
	if err != nil {
		return nil, err
	}
	rc, err := dialRaw(ctx, c.cfg)
	if err != nil {
		return nil, err
	}
	s := &Stream{
		soloRequest: soloRequest{cfg: c.cfg, rc: rc, id: 1},
		method:      method,
		csv:         strings.EqualFold(params.Format, "csv"),
		gzip:        strings.EqualFold(params.Compress, "gzip"),
	}
	s.begin(ctx)
	if err := s.send(s.ctx, method, raw); err != nil {
		s.cancel()
		return nil, err
	}
	return s, nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Next advances to the next row and reports whether there is one. It returns false at
// the end of the stream and on any error (see Err).
func (s *Stream) Next() bool {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.done {
		return false
	}
	if s.ctx.Err() != nil {
		s.finish(nil)
		return false
	}
	ok, err := s.advance()
	if ok && s.ctx.Err() != nil {
		ok = false // cancelled meanwhile: do not hand out more rows
	}
	if !ok {
		s.finish(err)
		return false
	}
	s.n++
	return true
}

// Row returns the current row as a JSON object (ndjson format; nil for csv). It is valid
// until the next call to Next.
func (s *Stream) Row() json.RawMessage {
	if s.csv {
		return nil
	}
	return s.row
}

// Line returns the current row as text: one CSV record without its CRLF (csv format; the
// first is the header, and a record with a quoted line break is one Line), or the row's
// JSON (ndjson format).
func (s *Stream) Line() string { return string(s.line) }

// Scan decodes the current row (ndjson format) into v.
func (s *Stream) Scan(v any) error {
	if s.csv {
		return errors.New("segmentd: Scan needs the ndjson format; use Line or Record for csv")
	}
	return json.Unmarshal(s.row, v)
}

// Record parses the current CSV record (csv format) into its fields.
func (s *Stream) Record() ([]string, error) {
	if !s.csv {
		return nil, errors.New("segmentd: Record needs the csv format")
	}
	r := csv.NewReader(bytes.NewReader(s.line))
	r.FieldsPerRecord = -1
	return r.Read()
}

// Err returns the error that ended the stream: nil at a normal end (and after Close), an
// *Error for an error reply, a *ConnError when the connection failed, ctx.Err() when the
// context was cancelled, or a decoding error (a truncated gzip stream).
func (s *Stream) Err() error { return s.loadErr() }

// Summary returns the final reply, or nil if it has not been received (yet). After a
// cancellation it says how many rows were sent, with Complete false.
func (s *Stream) Summary() *StreamSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.summary
}

// Close ends the stream: if it is still running it sends rpc.cancel and waits (at most
// the cancel grace) for the final reply, then closes the stream's connection. It may be
// called from another goroutine to stop a Next that waits, and more than once.
func (s *Stream) Close() error { return s.close(s.finish) }

// WriteTo writes the remaining rows as text, exactly as the server encoded them: CSV
// records ending in CRLF, or NDJSON lines ending in "\n" (the decompressed content when
// gzip was requested). It returns the stream's error, if any.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	end := "\n"
	if s.csv {
		end = "\r\n"
	}
	bw := bufio.NewWriter(w)
	var n int64
	for s.Next() {
		k, err := bw.WriteString(s.Line())
		n += int64(k)
		if err == nil {
			k, err = bw.WriteString(end)
			n += int64(k)
		}
		if err != nil {
			s.Close()
			return n, err
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, s.Err()
}

// rowsPayload is the params of a segments.rows notification.
type rowsPayload struct {
	ID   json.RawMessage   `json:"id"`
	Rows []json.RawMessage `json:"rows"`
	CSV  *string           `json:"csv"`
	Gzip *string           `json:"gzip"`
}

// readPayload returns the next segments.rows payload of this stream, or nil once the
// final reply is read (s.final, s.summary); an error reply is returned as its *Error.
func (s *Stream) readPayload() (*rowsPayload, error) {
	for {
		m, err := s.read()
		if err != nil {
			return nil, err
		}
		if m.Method != "" {
			if m.Method != "segments.rows" {
				continue
			}
			p := new(rowsPayload)
			if err := json.Unmarshal(m.Params, p); err != nil {
				return nil, fmt.Errorf("segmentd: %s: undecodable segments.rows: %v", s.method, err)
			}
			if id, ok := parseIntID(p.ID); !ok || id != s.id {
				continue
			}
			return p, nil
		}
		if m.isNullReply() {
			return nil, nullReplyErr(m, s.cfg.address)
		}
		if id, ok := m.intID(); !ok || id != s.id {
			continue
		}
		s.final = true
		if m.Error != nil {
			s.srvErr = m.Error.toError(s.method)
			return nil, s.srvErr
		}
		sum := &StreamSummary{Raw: m.Result}
		if err := json.Unmarshal(m.Result, sum); err != nil {
			return nil, fmt.Errorf("segmentd: %s: undecodable final reply: %v", s.method, err)
		}
		s.mu.Lock()
		s.summary = sum
		s.mu.Unlock()
		return nil, nil
	}
}

// chunkSource is the stream's text (CSV pieces, or the gzip bytes) as an io.Reader.
type chunkSource struct {
	s   *Stream
	buf []byte
}

func (c *chunkSource) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.s.final {
			return 0, io.EOF
		}
		pl, err := c.s.readPayload()
		if err != nil {
			return 0, err
		}
		if pl == nil {
			return 0, io.EOF
		}
		switch {
		case c.s.gzip && pl.Gzip != nil:
			if c.buf, err = base64.StdEncoding.DecodeString(*pl.Gzip); err != nil {
				return 0, fmt.Errorf("segmentd: %s: bad base64 in a gzip chunk: %v", c.s.method, err)
			}
		case !c.s.gzip && pl.CSV != nil:
			c.buf = []byte(*pl.CSV)
		default:
			return 0, fmt.Errorf("segmentd: %s: unexpected segments.rows payload for format %s", c.s.method, c.s.formatName())
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (s *Stream) formatName() string {
	f := "ndjson"
	if s.csv {
		f = "csv"
	}
	if s.gzip {
		f += "+gzip"
	}
	return f
}

// advance reads the next row into s.row/s.line. It returns false at the end.
func (s *Stream) advance() (bool, error) {
	if !s.csv && !s.gzip { // rows arrive as JSON arrays
		for len(s.rows) == 0 {
			if s.final {
				return false, s.checkCount()
			}
			pl, err := s.readPayload()
			if err != nil {
				return false, err
			}
			if pl == nil {
				return false, s.checkCount()
			}
			if pl.Rows == nil {
				return false, fmt.Errorf("segmentd: %s: unexpected segments.rows payload for format ndjson", s.method)
			}
			s.rows = pl.Rows
		}
		s.row, s.rows = s.rows[0], s.rows[1:]
		s.line = s.row
		return true, nil
	}
	if s.text == nil {
		s.src = &chunkSource{s: s}
		if s.gzip {
			zr, err := gzip.NewReader(s.src)
			if err != nil {
				if err == io.EOF && s.final { // no gzip bytes at all before the final reply
					return false, s.gzipErr(io.ErrUnexpectedEOF)
				}
				return false, s.gzipErr(err)
			}
			zr.Multistream(false) // one gzip member: its end is the end of the rows
			s.text = bufio.NewReaderSize(zr, 64<<10)
		} else {
			s.text = bufio.NewReaderSize(s.src, 64<<10)
		}
	}
	rec, err := s.readRecord()
	if err == io.EOF {
		if !s.final { // gzip ended (trailer checked): the final reply comes next
			pl, err := s.readPayload()
			if err != nil {
				return false, err
			}
			if pl != nil {
				return false, fmt.Errorf("segmentd: %s: rows after the end of the gzip stream", s.method)
			}
		}
		return false, s.checkCount()
	}
	if err != nil {
		return false, s.gzipErr(err)
	}
	s.line = rec
	if !s.csv {
		s.row = rec
	}
	return true, nil
}

// gzipErr names a decoding error (unless it is an error reply or a connection error).
func (s *Stream) gzipErr(err error) error {
	var e *Error
	var ce *ConnError
	if !s.gzip || errors.As(err, &e) || errors.As(err, &ce) {
		return err
	}
	if s.srvErr != nil {
		return s.srvErr
	}
	return fmt.Errorf("segmentd: %s: gzip stream: %w", s.method, err)
}

// readRecord returns the next NDJSON line or CSV record (a CSV record continues over line
// breaks inside quotes), without its line end.
func (s *Stream) readRecord() ([]byte, error) {
	var rec []byte
	for {
		part, err := s.text.ReadBytes('\n')
		rec = append(rec, part...)
		if err == io.EOF {
			if len(rec) == 0 {
				return nil, io.EOF
			}
			return trimEOL(rec), nil // an unterminated last record
		}
		if err != nil {
			return nil, err
		}
		if s.csv && bytes.Count(rec, []byte{'"'})%2 == 1 {
			continue // inside a quoted field
		}
		return trimEOL(rec), nil
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// checkCount compares the rows read with the final reply's count.
func (s *Stream) checkCount() error {
	if s.summary == nil || !s.summary.Complete {
		return nil
	}
	got := s.n
	if s.csv && got > 0 {
		got-- // the header
	}
	if got != s.summary.Rows {
		return fmt.Errorf("segmentd: %s: read %d rows, the final reply says %d", s.method, got, s.summary.Rows)
	}
	return nil
}

// finish ends the stream: it records why, lets the server finish (rpc.cancel, then the
// final reply, bounded by the cancel grace) and closes the connection.
func (s *Stream) finish(err error) {
	if s.srvErr != nil {
		err = s.srvErr // the reason, unless the context was cancelled or Close called
	}
	err = s.setDone(err)
	if !s.final {
		var ce *ConnError
		if !errors.As(err, &ce) {
			s.sendCancel()
			for !s.final {
				if _, e := s.readPayload(); e != nil {
					break
				}
			}
		}
	}
	s.stopWatching()
	s.cancel()
	s.rc.nc.Close()
	s.rows, s.text, s.src = nil, nil, nil
}
