package segmentd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Error codes of the protocol (proto-docs/transport.md, "Errors"). Codes and their
// data.type never change meaning; new ones may be added.
const (
	CodeParseError     = -32700 // parse_error: the line is not valid JSON
	CodeInvalidRequest = -32600 // invalid_request: not a valid request envelope
	CodeMethodNotFound = -32601 // method_not_found: no such method (Data["method"])
	CodeInvalidParams  = -32602 // invalid_params: params do not fit; Path names the part
	CodeInternal       = -32603 // internal: a failure inside the server
	CodeNotFound       = -32001 // not_found: the named thing (or book) does not exist
	CodeConflict       = -32002 // conflict: the change conflicts with existing state
	CodeTooLarge       = -32003 // too_large: a line, batch or amount exceeds a limit
	CodeOverloaded     = -32004 // overloaded: too much in flight, or a stalled subscriber
	CodeUnauthorized   = -32005 // unauthorized: no/wrong token, or not granted
	CodeShuttingDown   = -32006 // shutting_down: the server is draining
	CodeUnavailable    = -32007 // unavailable: the book is still loading; retry shortly
	CodeCancelled      = -32800 // cancelled: rpc.cancel, disconnect or drain timeout
)

// Error is an error reply from the server. Use errors.As to get at it:
//
//	var e *segmentd.Error
//	if errors.As(err, &e) && e.Type == "invalid_params" { fmt.Println(e.Path) }
//
// errors.Is(err, segmentd.ErrNotFound) and the other Err* values compare the code only.
type Error struct {
	// Method is the method of the request that failed ("" when not known).
	Method string
	// Code is the JSON-RPC error code, one of the Code* constants.
	Code int
	// Message is the server's explanation, for people.
	Message string
	// Type is data.type, for programs ("invalid_params", "not_found", ...).
	Type string
	// Path is data.path: the JSON path of the offending part of the params
	// ("filters[0].op", "" for the params as a whole). Only for invalid_params.
	Path string
	// Data is the whole error data object (type and path included); numbers are
	// json.Number, so cursors and ids keep every digit. Nil when the reply had none.
	Data map[string]any
}

func (e *Error) Error() string {
	var b bytes.Buffer
	b.WriteString("segmentd: ")
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	b.WriteString(" (")
	b.WriteString(strconv.Itoa(e.Code))
	if e.Type != "" {
		b.WriteString(" ")
		b.WriteString(e.Type)
	}
	if _, ok := e.Data["path"]; ok {
		fmt.Fprintf(&b, " at %q", e.Path)
	}
	b.WriteString(")")
	return b.String()
}

// Is reports whether target is an *Error with the same code and an empty message: the
// Err* values below, so that errors.Is(err, segmentd.ErrNotFound) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// DataInt returns a member of Data as an integer (for example "last_cursor").
func (e *Error) DataInt(key string) (int64, bool) {
	n, ok := e.Data[key].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

// Values to compare with errors.Is; they match any *Error with the same code.
var (
	ErrInvalidParams  = &Error{Code: CodeInvalidParams, Type: "invalid_params"}
	ErrMethodNotFound = &Error{Code: CodeMethodNotFound, Type: "method_not_found"}
	ErrNotFound       = &Error{Code: CodeNotFound, Type: "not_found"}
	ErrConflict       = &Error{Code: CodeConflict, Type: "conflict"}
	ErrOverloaded     = &Error{Code: CodeOverloaded, Type: "overloaded"}
	ErrUnauthorized   = &Error{Code: CodeUnauthorized, Type: "unauthorized"}
	ErrShuttingDown   = &Error{Code: CodeShuttingDown, Type: "shutting_down"}
	ErrUnavailable    = &Error{Code: CodeUnavailable, Type: "unavailable"}
	ErrCancelled      = &Error{Code: CodeCancelled, Type: "cancelled"}
)

// wireError is the "error" member of a reply as it is on the wire.
type wireError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func (w *wireError) toError(method string) *Error {
	e := &Error{Method: method, Code: w.Code, Message: w.Message}
	if len(w.Data) > 0 && !bytes.Equal(w.Data, []byte("null")) {
		d := json.NewDecoder(bytes.NewReader(w.Data))
		d.UseNumber()
		var data map[string]any
		if d.Decode(&data) == nil {
			e.Data = data
			e.Type, _ = data["type"].(string)
			e.Path, _ = data["path"].(string)
		}
	}
	return e
}

// ConnError reports that the connection to the server failed: it could not be opened,
// a request could not be written, or the connection ended before the reply. A call that
// fails with a ConnError after its request was written may or may not have run.
//
// It is distinct from *Error (an answer from the server); errors.Is(err, ErrConnLost)
// matches any ConnError.
type ConnError struct {
	Op   string // "dial", "hello", "write" or "read"
	Addr string // the server's address
	Err  error  // the cause (io.ErrUnexpectedEOF when the server closed the connection)
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("segmentd: connection to %s: %s: %v", e.Addr, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *ConnError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrConnLost) true for every ConnError.
func (e *ConnError) Is(target error) bool { return target == ErrConnLost }

// ErrConnLost matches every *ConnError with errors.Is.
var ErrConnLost = errors.New("segmentd: connection lost")

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("segmentd: client closed")

// errEarlyEOF is the cause of a ConnError when the server closed the connection before
// the reply.
var errEarlyEOF = fmt.Errorf("server closed the connection before the reply: %w", io.ErrUnexpectedEOF)
