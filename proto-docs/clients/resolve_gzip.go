// Streams a segment as gzip over the socket and writes the decoded rows to stdout.
//
//	go run resolve_gzip.go segmentd.sock '{"id": 1, "format": "csv"}' > audience.csv
//
// Standard library only. The final result goes to stderr. An error reply, a truncated gzip
// stream or a connection that ends before the final reply is reported on stderr with exit
// status 1: never a hang.
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
)

// One line from the server: a segments.rows notification or the final reply to id 1.
type message struct {
	ID     *int64 `json:"id"`
	Method string `json:"method"`
	Params struct {
		Gzip string `json:"gzip"`
	} `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

func resolveGzip(sockPath string, params map[string]any, out io.Writer) (json.RawMessage, error) {
	conn, err := net.Dial("unix", sockPath)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	params["compress"] = "gzip"
	request, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "segments.resolve", "params": params})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(request, '\n')); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	final := make(chan json.RawMessage, 1)
	go func() { // decodes lines: gzip bytes into the pipe; the final reply ends it
		sc := bufio.NewScanner(conn)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var m message
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				pw.CloseWithError(err)
				return
			}
			if m.Method == "segments.rows" {
				b, err := base64.StdEncoding.DecodeString(m.Params.Gzip)
				if err != nil {
					pw.CloseWithError(err)
					return
				}
				if _, err := pw.Write(b); err != nil {
					return // the reader gave up
				}
			} else if m.ID != nil && *m.ID == 1 {
				if m.Error != nil { // an error reply ends the call too
					pw.CloseWithError(fmt.Errorf("error reply %s", m.Error))
					return
				}
				final <- m.Result
				pw.Close()
				return
			}
		}
		pw.CloseWithError(io.ErrUnexpectedEOF) // the connection ended before the final reply
	}()
	zr, err := gzip.NewReader(pr)
	if err != nil {
		pr.CloseWithError(err)
		return nil, err
	}
	if _, err := io.Copy(out, zr); err != nil { // an error too if the gzip stream was truncated
		pr.CloseWithError(err)
		return nil, err
	}
	return <-final, nil
}

func main() {
	sockPath, paramsText := "segmentd.sock", `{"id": 1, "format": "csv"}`
	if len(os.Args) > 1 {
		sockPath = os.Args[1]
	}
	if len(os.Args) > 2 {
		paramsText = os.Args[2]
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(paramsText), &params); err != nil {
		fmt.Fprintln(os.Stderr, "params:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	result, err := resolveGzip(sockPath, params, out)
	out.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "segments.resolve:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, string(result))
}
