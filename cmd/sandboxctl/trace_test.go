package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// TestWriteTrace guarantees the --trace table: the client's share is the
// total minus the daemon's stages, every stage is listed in order in
// milliseconds, and the total closes the table.
func TestWriteTrace(t *testing.T) {
	var buf bytes.Buffer
	stages := []*sandboxv1.ExecStage{
		{Name: "daemon: a", Duration: durationpb.New(1500 * time.Microsecond)},
		{Name: "agent: b", Duration: durationpb.New(250 * time.Microsecond)},
	}
	if err := writeTrace(&buf, 3*time.Millisecond, stages); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := [][]string{{"STAGE", "MS"}, {"client <-> daemon: connect, request, stream", "1.250"}, {"daemon: a", "1.500"}, {"agent: b", "0.250"}, {"total (client)", "3.000"}}
	if len(lines) != len(want) {
		t.Fatalf("got %q", buf.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w[0]) || !strings.HasSuffix(lines[i], w[1]) {
			t.Errorf("line %d = %q, want %q ... %q", i, lines[i], w[0], w[1])
		}
	}
	buf.Reset()
	if err := writeTrace(&buf, time.Millisecond, nil); err != nil || !strings.Contains(buf.String(), "no stages") {
		t.Errorf("without stages: %q, %v", buf.String(), err)
	}
}
