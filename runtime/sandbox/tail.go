package sandbox

import (
	"bufio"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Bounds on what the daemon keeps of a sandbox's stderr (the agent's log and
// runsc's own errors): the sandbox is untrusted and may write without end.
const (
	// tailLines is how many recent lines are kept for error messages.
	tailLines = 20
	// maxLineBytes truncates longer lines.
	maxLineBytes = 512
)

// tail drains a sandbox's stderr into the daemon log at debug level and
// keeps the last lines for error messages.
type tail struct {
	log   *slog.Logger
	mu    sync.Mutex
	lines []string
}

func newTail(log *slog.Logger) *tail { return &tail{log: log} }

func (t *tail) drain(r io.Reader) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			t.add(strings.TrimRight(string(line), "\n"))
			// Skip the rest of an over-long line.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (t *tail) add(line string) {
	t.log.Debug("sandbox stderr", "line", line)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:tailLines-1]
	}
	t.lines = append(t.lines, line)
}

// text returns the kept lines joined, for an error message.
func (t *tail) text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "; ")
}

// lastLine returns the most recent line.
func (t *tail) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "no output"
	}
	return t.lines[len(t.lines)-1]
}
