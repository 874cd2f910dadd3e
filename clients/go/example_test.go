package segmentd_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	segmentd "github.com/segmentd/segmentd/clients/go"
)

// Count a segment, stream it as gzip CSV, then follow its trigger events.
func Example() {
	ctx := context.Background()
	c, err := segmentd.Dial(ctx, "unix:segmentd.sock")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	vip := []segmentd.Filter{{"dimension": "label", "op": "contains", "value": "vip"}}
	var count struct{ Matched, Sendable int }
	if err := c.Call(ctx, "segments.count", map[string]any{"filters": vip}, &count); err != nil {
		var e *segmentd.Error
		if errors.As(err, &e) {
			log.Fatalf("%d %s at %q: %s", e.Code, e.Type, e.Path, e.Message)
		}
		log.Fatal(err)
	}

	s, err := c.Resolve(ctx, segmentd.StreamParams{Filters: vip, Format: "csv", Compress: "gzip"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := s.WriteTo(os.Stdout); err != nil { // an error reply ends it too
		log.Fatal(err)
	}

	sub, err := c.Subscribe(ctx, segmentd.SubscribeOptions{After: 0})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	for sub.Next() { // resumes by itself across reconnects and restarts
		ev := sub.Event()
		fmt.Println(ev.Cursor, ev.Type, ev.Email)
	}
	log.Fatal(sub.Err())
}

func ExampleClient_Call_book() {
	c, err := segmentd.DialTCP("127.0.0.1:7070", os.Getenv("SEGMENTD_TOKEN"), segmentd.WithBook("acme"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var acme, globex struct{ Total int }
	ctx := context.Background()
	_ = c.Call(ctx, "contacts.count", nil, &acme)                            // the client's default book
	_ = c.Call(ctx, "contacts.count", nil, &globex, segmentd.Book("globex")) // another book
	fmt.Println(acme.Total, globex.Total)
}
