package segmentd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The rows of a stream read the same with and without gzip, for CSV and NDJSON, for
// segments.resolve and segments.export, including values CSV must quote.
func TestGzipStreamsDecodeToTheSameRows(t *testing.T) {
	srv := startServer(t, serverOptions{})
	ctx := testCtx(t, 30*time.Second)
	c := srv.client()
	mustCall(ctx, t, c, "fields.define", map[string]any{"name": "city", "type": "text"}, nil)
	const n = 1500
	names := []string{`Ana, "the" first`, "Ümit", "Line1\nLine2", " edge space", "plain", ""}
	for from := 0; from < n; from += 500 {
		var contacts []map[string]any
		for i, e := range emails("g", from, 500) {
			contacts = append(contacts, map[string]any{
				"email": e, "name": names[(from+i)%len(names)], "labels": []string{"vip", fmt.Sprintf("l%d", (from+i)%7)},
				"fields": map[string]any{"city": fmt.Sprintf("City %d", (from+i)%13)}})
		}
		mustCall(ctx, t, c, "contacts.upsert", map[string]any{"contacts": contacts}, nil)
	}
	var seg struct{ ID int64 }
	mustCall(ctx, t, c, "segments.create", map[string]any{"name": "VIP contacts",
		"filters": []Filter{{"dimension": "label", "op": "contains", "value": "vip"}}}, &seg)

	read := func(p StreamParams, export bool) ([]string, *StreamSummary) {
		t.Helper()
		open := c.Resolve
		if export {
			open = c.Export
		}
		s, err := open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var lines []string
		for s.Next() {
			lines = append(lines, s.Line())
		}
		if err := s.Err(); err != nil {
			t.Fatalf("%s: %v", jsonString(p.object()), err)
		}
		return lines, s.Summary()
	}
	columns := []string{"email", "name", "labels", "city"}
	for _, format := range []string{"csv", "ndjson"} {
		plain, sum := read(StreamParams{ID: seg.ID, Format: format, Columns: columns, BatchSize: 100}, false)
		want := n
		if format == "csv" {
			want++ // the header
		}
		if len(plain) != want || sum == nil || sum.Rows != n || !sum.Complete || sum.Compress != "" || sum.Format != format {
			t.Fatalf("%s: %d lines, summary %+v", format, len(plain), sum)
		}
		for _, export := range []bool{false, true} {
			for _, batch := range []int{0, 7, 100} {
				zipped, zsum := read(StreamParams{ID: seg.ID, Format: format, Columns: columns, Compress: "gzip", BatchSize: batch}, export)
				if zsum.Compress != "gzip" || zsum.Rows != n || !zsum.Complete {
					t.Fatalf("%s gzip: summary %+v", format, zsum)
				}
				if strings.Join(zipped, "\n") != strings.Join(plain, "\n") {
					t.Fatalf("%s (export %v, batch %d): gzip rows differ from plain rows:\n%q\n%q", format, export, batch, head(zipped), head(plain))
				}
			}
		}
	}

	// A quoted line break stays inside its record, and Record parses it.
	s, err := c.Resolve(ctx, StreamParams{Filters: []Filter{{"dimension": "field", "field": "name", "op": "contains", "value": "line1"}},
		Format: "csv", Compress: "gzip"})
	if err != nil {
		t.Fatal(err)
	}
	var records [][]string
	for s.Next() {
		r, err := s.Record()
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, r)
	}
	if s.Err() != nil || len(records) != n/len(names)+1 || records[1][1] != "Line1\nLine2" || records[0][0] != "email" {
		t.Fatalf("records %q, err %v", head2(records), s.Err())
	}

	// WriteTo gives the server's text byte for byte (gzip decoded): CRLF line ends.
	var plainText, zippedText bytes.Buffer
	for i, buf := range []*bytes.Buffer{&plainText, &zippedText} {
		s, err := c.Resolve(ctx, StreamParams{ID: seg.ID, Format: "csv", Compress: map[int]string{1: "gzip"}[i]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.WriteTo(buf); err != nil {
			t.Fatal(err)
		}
	}
	if plainText.String() != zippedText.String() || !strings.HasPrefix(plainText.String(), "email,name,status\r\n") ||
		strings.Count(plainText.String(), "\r\n") != n+1 {
		t.Fatalf("WriteTo: %q…", plainText.String()[:200])
	}

	// Scan decodes NDJSON rows.
	s, err = c.Resolve(ctx, StreamParams{ID: seg.ID, Compress: "gzip", Columns: []string{"email", "labels"}})
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for s.Next() {
		var row struct {
			Email  string   `json:"email"`
			Labels []string `json:"labels"`
		}
		if err := s.Scan(&row); err != nil || !strings.HasSuffix(row.Email, "@example.com") || len(row.Labels) != 2 {
			t.Fatalf("row %s: %v", s.Row(), err)
		}
		count++
	}
	if s.Err() != nil || count != n {
		t.Fatalf("scanned %d rows: %v", count, s.Err())
	}
}

func head(lines []string) []string {
	if len(lines) > 3 {
		return lines[:3]
	}
	return lines
}

func head2(records [][]string) [][]string {
	if len(records) > 3 {
		return records[:3]
	}
	return records
}
