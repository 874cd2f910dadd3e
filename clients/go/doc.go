// Package segmentd is the Go client for segmentd, the segmentation sidecar that speaks
// newline-delimited JSON-RPC 2.0 over a Unix socket (and over TCP with a token).
//
// The protocol reference is proto-docs/ in the segmentd repository; this package follows
// it and uses the standard library only.
//
// # Connecting
//
// A [Client] holds one connection on which any number of calls are in flight at once
// (replies are matched by id; the client never has more in flight than the server's
// max_in_flight, so it never provokes -32004). It is safe for concurrent use:
//
//	c, err := segmentd.Dial(ctx, "unix:/var/run/segmentd.sock")
//	c, err := segmentd.Dial(ctx, "tcp:127.0.0.1:7070", segmentd.WithToken(token))
//
// If the connection is lost, the calls in flight on it fail with a [*ConnError] (they are
// never retried: the server may or may not have run them) and the next call dials again.
//
// # Calls and errors
//
// [Client.Call] sends a request and decodes the result. An error reply is returned as an
// [*Error] carrying the code, data.type, data.path and the rest of data:
//
//	var count struct{ Matched, Sendable int }
//	err := c.Call(ctx, "segments.count", map[string]any{"filters": filters}, &count)
//	var rpcErr *segmentd.Error
//	if errors.As(err, &rpcErr) && rpcErr.Code == segmentd.CodeInvalidParams {
//		fmt.Println("bad filter at", rpcErr.Path)
//	}
//
// Cancelling the context of a call sends rpc.cancel for it.
//
// # Streams
//
// [Client.Resolve] and [Client.Export] stream a segment's rows as an iterator ([*Stream]);
// with Compress: "gzip" the chunks are decoded inside, so the rows read the same either way.
// [Client.Subscribe] follows the trigger event log ([*Subscription]) and resumes by itself
// after reconnects and server restarts, delivering every event once, in cursor order;
// After: [Newest] makes it live only, and still exact on resume.
//
// Each stream runs on a connection of its own, dialled from the client's settings, so that
// a slow reader slows only its own stream (the server's backpressure works as designed)
// and calls made while iterating never wait behind stream data.
package segmentd
