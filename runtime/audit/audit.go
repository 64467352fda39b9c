// Package audit writes sandboxd's audit log: one JSON line per call of the
// sandbox API and per egress connection of a sandbox (see Record), appended by one goroutine behind a bounded
// queue so that a slow disk never stalls a call, and rotated by size.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultQueueLen is how many lines may wait for the writer. Lines are
	// about half a KiB, so a full queue holds a few MiB, and it rides out
	// a disk stall of a second at thousands of calls a second; past that
	// lines are dropped (and counted) rather than stall the calls.
	DefaultQueueLen = 4096
	// warnInterval spaces the warnings about lost lines and failed
	// rotations: often enough that an operator watching the daemon's log
	// sees an ongoing problem, rarely enough that an overflow of thousands
	// of lines a second does not flood it.
	warnInterval = 10 * time.Second
	// fileMode keeps the log to root: it names tenants and their peers.
	fileMode = 0o600
	// dirMode is the mode of a missing parent directory Open creates.
	dirMode = 0o700
)

// Config says where the audit log goes and how it rotates.
type Config struct {
	// Path is the log file. Rotated files are Path.1 (the newest) to
	// Path.Keep.
	Path string
	// MaxBytes is the size at which the file is rotated: a line that
	// would take it past MaxBytes goes to a new file. At least 1.
	MaxBytes int64
	// Keep is how many rotated files are kept; 0 keeps none.
	Keep int
	// QueueLen is how many lines may wait for the writer; 0 means
	// DefaultQueueLen.
	QueueLen int
}

// Metrics receives the audit log's losses (see runtime/metrics for the
// Prometheus implementation).
type Metrics interface {
	// AuditDropped: a line was not written.
	AuditDropped()
}

// Log is an open audit log. Append may be called from any goroutine.
type Log struct {
	cfg     Config
	metrics Metrics
	log     *slog.Logger

	// mu orders Append's sends before Close closes queue.
	mu     sync.RWMutex
	closed bool
	queue  chan Record
	// done is closed when the writer has written the queue and closed
	// the file; closeErr is then that close's error.
	done     chan struct{}
	closeErr error

	lost       atomic.Int64 // lines lost since the last warning
	lossWarn   throttle
	rotateWarn throttle

	// The writer goroutine's own: the open file (nil after a failed
	// rotation or open, reopened at the next line) and its size.
	f    *os.File
	size int64
}

// Open opens (or creates) the log file for appending and starts the
// writer. Close it to write what is queued.
func Open(cfg Config, m Metrics, log *slog.Logger) (*Log, error) {
	if cfg.Path == "" {
		return nil, errors.New("opening audit log: no path")
	}
	if cfg.MaxBytes < 1 {
		return nil, fmt.Errorf("opening audit log: max bytes %d: must be at least 1", cfg.MaxBytes)
	}
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("opening audit log: keep %d: must not be negative", cfg.Keep)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), dirMode); err != nil {
		return nil, fmt.Errorf("creating audit log directory: %w", err)
	}
	l := &Log{cfg: cfg, metrics: m, log: log, queue: make(chan Record, cfg.QueueLen), done: make(chan struct{})}
	if err := l.open(); err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// Append queues r to be written, without waiting: when the queue is full
// r is dropped, counted and warned about. Records appended after Close are
// dropped. r's Exec, File and Egress must not change afterwards.
func (l *Log) Append(r Record) {
	r = r.clipped()
	r.Time = r.Time.UTC()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	select {
	case l.queue <- r:
	default:
		l.lose(errors.New("the queue is full: the disk does not keep up"))
	}
}

// Close writes the queued lines, closes the file and returns the error of
// closing it. It waits for the writer, however slow the disk.
func (l *Log) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.queue)
	}
	l.mu.Unlock()
	<-l.done
	return l.closeErr
}

// run writes the queued records, one JSON line each, until Close.
func (l *Log) run() {
	defer close(l.done)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for r := range l.queue {
		buf.Reset()
		if err := enc.Encode(r); err != nil {
			l.lose(fmt.Errorf("encoding: %w", err))
			continue
		}
		if err := l.write(buf.Bytes()); err != nil {
			l.lose(err)
		}
	}
	if l.f != nil {
		l.closeErr = l.f.Close()
	}
}

// write appends line to the file, rotating it first when line would take
// it past MaxBytes. A failed rotation is warned about and the line goes to
// the file as it is: a big file loses less than dropped lines.
func (l *Log) write(line []byte) error {
	if l.f != nil && l.size > 0 && l.size+int64(len(line)) > l.cfg.MaxBytes {
		if err := l.rotate(); err != nil && l.rotateWarn.allow() {
			l.log.Warn("rotating the audit log", "path", l.cfg.Path, "err", err)
		}
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// rotate closes the file and shifts it to Path.1, Path.1 to Path.2 and so
// on, overwriting Path.Keep; with Keep 0 it removes the file. The next
// write opens a new file.
func (l *Log) rotate() error {
	closeErr := l.f.Close()
	l.f, l.size = nil, 0
	if l.cfg.Keep == 0 {
		return errors.Join(closeErr, os.Remove(l.cfg.Path))
	}
	for i := l.cfg.Keep - 1; i >= 1; i-- {
		if err := os.Rename(l.rotated(i), l.rotated(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return errors.Join(closeErr, err)
		}
	}
	return errors.Join(closeErr, os.Rename(l.cfg.Path, l.rotated(1)))
}

// rotated names the i-th rotated file.
func (l *Log) rotated(i int) string { return l.cfg.Path + "." + strconv.Itoa(i) }

// open opens the file for appending, creating it with fileMode.
func (l *Log) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("opening audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening audit log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// lose counts a line that was not written and warns, at most once per
// warnInterval, with the number lost since the last warning.
func (l *Log) lose(err error) {
	l.metrics.AuditDropped()
	l.lost.Add(1)
	if l.lossWarn.allow() {
		l.log.Warn("audit log lines lost", "path", l.cfg.Path, "lost", l.lost.Swap(0), "err", err)
	}
}

// throttle lets one event through per warnInterval.
type throttle struct{ last atomic.Int64 }

// allow reports whether an event may go through now.
func (t *throttle) allow() bool {
	now, last := time.Now().UnixNano(), t.last.Load()
	return now-last >= int64(warnInterval) && t.last.CompareAndSwap(last, now)
}
