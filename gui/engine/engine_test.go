package engine

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

func frame(stream byte, s string) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

func TestReadLinesSplitsStreamsAndJoinsPartialLines(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "hello\nwor"))
	in.Write(frame(2, "oops\n"))
	in.Write(frame(1, "ld\r\n"))
	in.Write(frame(1, "tail without newline"))
	var got []LogLine
	if err := readLines(&in, false, func(l LogLine) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	want := []LogLine{{"stdout", "hello"}, {"stderr", "oops"}, {"stdout", "world"}, {"stdout", "tail without newline"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReadLinesTTYIsOneRawStream(t *testing.T) {
	var got []LogLine
	if err := readLines(strings.NewReader("plain\r\ntext"), true, func(l LogLine) { got = append(got, l) }); err != nil {
		t.Fatal(err)
	}
	want := []LogLine{{"stdout", "plain"}, {"stdout", "text"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReadLinesRejectsGarbage(t *testing.T) {
	if err := readLines(strings.NewReader("plain text, not frames"), false, func(LogLine) {}); err == nil {
		t.Fatal("want an error for a stream that is not multiplexed")
	}
}

func TestPublishedDedupesAndSorts(t *testing.T) {
	c := Container{Ports: []Port{
		{IP: "::", PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
		{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
		{IP: "0.0.0.0", PrivatePort: 53, PublicPort: 5353, Type: "udp"},
		{PrivatePort: 9090, Type: "tcp"},
	}}
	got := c.Published()
	want := []Port{{PrivatePort: 53, PublicPort: 5353, Type: "udp"}, {PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
