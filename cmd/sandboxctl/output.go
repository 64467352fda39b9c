package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitError ends a verb with a given exit status once the verb has printed
// all it had to say (exec passing on the code's exit status).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// exitStatus reports err, the outcome of verb, on stderr and returns the exit
// status of sandboxctl: 0 for nil, 130 once ctx is cancelled (Ctrl-C), 2 for
// usage errors, the chosen status of an exitError, and 1 for the rest.
func (c *cli) exitStatus(ctx context.Context, verb string, err error) int {
	var (
		ee *exitError
		ue *usageError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case ctx.Err() != nil:
		c.note(verb, "interrupted")
		return exitInterrupted
	case errors.As(err, &ue):
		c.note(verb, fmt.Sprintf("%s (see 'sandboxctl %s --help')", ue.msg, verb))
		return exitUsage
	}
	c.note(verb, c.describe(err))
	return exitFailure
}

// describe renders err for the error line: a gRPC status as its message and
// its code in words, "sandbox "x" not found (not found)"; an RPC that never
// reached the daemon as a hint naming the socket; anything else as is.
func (c *cli) describe(err error) string {
	if c.conn != nil {
		if u := c.conn.unreachable(err); u != nil {
			return u.Error()
		}
	}
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", st.Message(), codeName(st.Code()))
	}
	return err.Error()
}

// note writes "sandboxctl: VERB: MSG" to stderr as a single line.
func (c *cli) note(verb, msg string) {
	msg = strings.TrimSpace(lineBreaks.Replace(msg))
	fmt.Fprintf(c.stderr, "sandboxctl: %s: %s\n", verb, msg)
}

// lineBreaks turns line breaks into spaces, keeping notes on one line.
var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// codeName spells a gRPC code in lower-case words: NotFound is "not found".
func codeName(code codes.Code) string {
	var b strings.Builder
	for i, r := range code.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// jsonOptions renders messages in the canonical proto3 JSON mapping
// (lowerCamelCase names, enums by name), with every field present so that
// scripts see the same shape whatever the values.
var jsonOptions = protojson.MarshalOptions{EmitUnpopulated: true}

// writeJSON writes msgs as indented JSON: one object, or an array when
// asArray is set (an empty array for no messages).
func writeJSON(w io.Writer, asArray bool, msgs ...proto.Message) error {
	raw := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := jsonOptions.Marshal(m)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	var v any = raw
	if !asArray {
		v = raw[0]
	}
	// Re-encoding fixes the layout, which protojson deliberately varies.
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// newTable returns a tabwriter for columns separated by tabs.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// humanDuration renders d compactly with two units at most: 45s, 3m20s,
// 5h2m, 2d3h. Negative durations render as zero.
func humanDuration(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}
