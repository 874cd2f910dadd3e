// Command resolve_gzip streams a segment as gzip CSV and writes the decoded CSV to stdout,
// with the segmentd Go client.
//
//	go run ./examples/resolve_gzip SOCKET '{"id": 1, "format": "csv"}' > audience.csv
//
// PARAMS are the params of segments.resolve as a JSON object (proto-docs/streams.md); the
// program adds "compress": "gzip" (and "format": "csv" when they name no format). The
// client decodes the gzip stream and checks it (CRC, length, row count), so stdout gets
// the CSV exactly as the server wrote it (CRLF line ends); the final reply goes to stderr.
//
// Exit status: 0 when the whole audience was written; 2 for an error reply (an unknown
// segment, a bad column, ...), printed to stderr as "error CODE TYPE at PATH: MESSAGE"
// (" at PATH" only when the reply names one); 1 for anything else (bad arguments, no
// server, a lost connection, a corrupt stream), with a message. It never hangs on an
// error reply.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	segmentd "github.com/segmentd/segmentd/clients/go"
)

const usage = `usage: resolve_gzip SOCKET PARAMS
  e.g. go run ./examples/resolve_gzip ./segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, usage)
		return 1
	}
	socket, paramsText := args[0], args[1]
	var params segmentd.StreamParams
	dec := json.NewDecoder(bytes.NewReader([]byte(paramsText)))
	dec.DisallowUnknownFields() // a misspelt member is an error here, not silently dropped
	err := dec.Decode(&params)
	if err == nil && dec.More() {
		err = errors.New("more after the JSON object")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "PARAMS must be a JSON object of segments.resolve params: %v\n%s\n", err, usage)
		return 1
	}
	if params.Format == "" {
		params.Format = "csv"
	}
	params.Compress = "gzip"

	// Ctrl-C cancels the stream on the server (rpc.cancel) before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := segmentd.Dial(ctx, "unix:"+socket)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	s, err := c.Resolve(ctx, params)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	if _, err := s.WriteTo(out); err != nil { // an error reply ends it too: never a hang
		out.Flush()
		return fail(err)
	}
	if err := out.Flush(); err != nil {
		return fail(err)
	}
	fmt.Fprintln(os.Stderr, string(s.Summary().Raw))
	return 0
}

// fail reports err: an error reply as "error CODE TYPE at PATH: MESSAGE" (exit 2),
// anything else as it is (exit 1).
func fail(err error) int {
	var e *segmentd.Error
	if errors.As(err, &e) {
		where := ""
		if _, ok := e.Data["path"]; ok {
			where = " at " + e.Path
			if e.Path == "" {
				where = " at (params)"
			}
		}
		typ := e.Type
		if typ == "" {
			typ = "error"
		}
		fmt.Fprintf(os.Stderr, "error %d %s%s: %s\n", e.Code, typ, where, e.Message)
		return 2
	}
	fmt.Fprintf(os.Stderr, "segments.resolve failed: %v\n", err)
	return 1
}
