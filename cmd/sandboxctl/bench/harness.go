package bench

import (
	"context"
	"errors"
	"math"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// Limits of the harness.
const (
	// roundTimeout bounds one run of a scenario or baseline. A cold boot
	// plus the scientific imports takes seconds and 64 MiB moves in well
	// under a minute; a run still going after this is hung, and counting it
	// as a failure beats stalling the whole benchmark.
	roundTimeout = 3 * time.Minute
	// cleanupTimeout bounds destroying sandboxes and containers at the end,
	// also after Ctrl-C.
	cleanupTimeout = time.Minute
	// maxSeriesErrors is how many distinct failure messages a row keeps
	// and prints; past that only the count grows.
	maxSeriesErrors = 5
)

// Kinds of rows.
const (
	kindScenario = "scenario" // latencies of the daemon
	kindBaseline = "baseline" // latencies without the daemon
	kindMemory   = "memory"   // memory of idle sandboxes, not latencies
)

// sample is the outcome of one timed operation of a run.
type sample struct {
	row string  // the row it belongs to, e.g. "exec-bash"
	ms  float64 // how long it took; meaningless when err is set
	err error   // why the run failed; nil on success
	// cold, for runs that created a sandbox, is the response's cold_start;
	// nil when the run created none (or the create failed).
	cold *bool
	// start is how the created sandbox started (the response's start);
	// unspecified when the daemon does not say or no sandbox was created.
	start sandboxv1.StartKind
	// bytes is the payload the operation moved (files), else 0.
	bytes int64
	// sandboxes is how many sandboxes the operation waited for (refill),
	// else 0.
	sandboxes int
	// mem is what a memory run measured; ms is then meaningless.
	mem *memSample
}

// memSample is the memory of one idle sandbox.
type memSample struct {
	cgroup int64 // bytes its host cgroup charges (GetSandbox usage)
	pss    int64 // proportional set size of its host processes; -1 unknown
}

// benchItem is a scenario or a baseline: a setup, then rounds, each of which
// does one run and returns its samples, then a close. Any func may be nil.
type benchItem struct {
	name string   // for progress and errors
	kind string   // kindScenario or kindBaseline
	rows []string // the rows its samples fill, in report order

	// setup prepares the rounds; on error the item's rows get the error
	// and no runs. It may set warmup and runs (burst derives them from K).
	setup func(ctx context.Context) error
	round func(ctx context.Context) []sample
	// close releases what setup and the rounds hold. It gets a context
	// that is not cancelled by Ctrl-C.
	close func(ctx context.Context) error

	// warmup and runs are the item's untimed and timed rounds; runs zero
	// means the harness's.
	warmup, runs int
}

// stepError says which step of a run failed ("create", "exec") while
// keeping the step's own error, a gRPC status, for describe.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// series is the record of one row: every timed run and its outcome.
type series struct {
	Name, Kind string
	Runs       int       // timed runs done
	Samples    []float64 // milliseconds of the successful runs, in run order
	Errors     []string  // the first maxSeriesErrors distinct failures
	// Creates counts the timed runs whose CreateSandbox answered, and
	// ColdStarts those of them whose response said cold_start.
	Creates, ColdStarts int
	// Pooled, Restores and Boots count the creates whose response said
	// start POOL, RESTORE and BOOT; all zero from a daemon that predates
	// snapshots.
	Pooled, Restores, Boots int
	Bytes                   int64 // payload of one run (files rows), else 0
	Sandboxes               int   // sandboxes of one run (refill), else 0
	// Memory holds the successful runs of a memory row, in run order (its
	// Samples stay empty: a row has one or the other).
	Memory []memSample
}

// successes is the number of successful runs.
func (s *series) successes() int { return len(s.Samples) + len(s.Memory) }

// startsKnown reports whether the daemon said how the row's sandboxes
// started (Sandbox.start).
func (s *series) startsKnown() bool { return s.Pooled+s.Restores+s.Boots > 0 }

// addError keeps msg unless it is a repeat or the row has enough.
func (s *series) addError(msg string) bool {
	for _, e := range s.Errors {
		if e == msg {
			return false
		}
	}
	if len(s.Errors) >= maxSeriesErrors {
		return false
	}
	s.Errors = append(s.Errors, msg)
	return true
}

// harness runs items round-robin: round i runs one run of every item that
// has rounds left, so that whatever disturbs the host during the benchmark
// disturbs every item alike.
type harness struct {
	runs, warmup int
	// before runs untimed before every run (waiting for the warm pool).
	before   func(context.Context)
	prog     progress
	notef    func(format string, args ...any)
	describe func(error) string

	order []*series
	rows  map[string]*series
}

// run sets up the items, runs their rounds and closes them. It returns
// early when ctx is cancelled; the results so far stay in the harness.
func (h *harness) run(ctx context.Context, items []*benchItem) {
	h.rows = map[string]*series{}
	for _, it := range items {
		for _, r := range it.rows {
			s := &series{Name: r, Kind: it.kind}
			h.rows[r] = s
			h.order = append(h.order, s)
		}
	}
	defer func() {
		for _, it := range items {
			if it.close == nil {
				continue
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			if err := it.close(cctx); err != nil {
				h.notef("%s: cleaning up: %s", it.name, h.describe(err))
			}
			cancel()
		}
	}()

	active := h.setup(ctx, items)
	if ctx.Err() == nil {
		h.rounds(ctx, active)
	}
}

// setup sets up the items and returns those ready to run. An item whose
// setup fails gets the error in its rows, which then have no runs.
func (h *harness) setup(ctx context.Context, items []*benchItem) []*benchItem {
	var active []*benchItem
	for _, it := range items {
		if it.runs == 0 {
			it.runs, it.warmup = h.runs, h.warmup
		}
		if it.setup != nil {
			if err := it.setup(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				msg := h.describeErr(err)
				h.notef("%s: setup failed: %s", it.name, msg)
				for _, r := range it.rows {
					h.rows[r].addError("setup: " + msg)
				}
				continue
			}
		}
		active = append(active, it)
	}
	return active
}

// rounds runs the rounds of the items until all are done or ctx is
// cancelled, recording the samples of the timed ones.
func (h *harness) rounds(ctx context.Context, items []*benchItem) {
	rounds, total := 0, 0
	for _, it := range items {
		rounds = max(rounds, it.warmup+it.runs)
		total += it.warmup + it.runs
	}
	h.prog.start(total, rounds)
	defer h.prog.finish()
	for r := range rounds {
		for _, it := range items {
			if r >= it.warmup+it.runs {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			warm := r < it.warmup
			h.prog.step(it.name, r, rounds, warm)
			if h.before != nil {
				h.before(ctx)
			}
			rctx, cancel := context.WithTimeout(ctx, roundTimeout)
			samples := it.round(rctx)
			cancel()
			if ctx.Err() != nil {
				return // failures caused by the interruption are no data
			}
			if !warm {
				h.record(samples)
			}
			h.prog.stepDone(samples)
		}
		h.prog.roundDone(r, rounds)
	}
}

// record adds the samples of a timed run to their rows.
func (h *harness) record(samples []sample) {
	for _, sm := range samples {
		s := h.rows[sm.row]
		s.Runs++
		if sm.cold != nil {
			s.Creates++
			if *sm.cold {
				s.ColdStarts++
			}
			switch sm.start {
			case sandboxv1.StartKind_START_KIND_POOL:
				s.Pooled++
			case sandboxv1.StartKind_START_KIND_RESTORE:
				s.Restores++
			case sandboxv1.StartKind_START_KIND_BOOT:
				s.Boots++
			}
		}
		if sm.bytes > 0 {
			s.Bytes = sm.bytes
		}
		if sm.sandboxes > 0 {
			s.Sandboxes = sm.sandboxes
		}
		if sm.err != nil {
			msg := h.describeErr(sm.err)
			if s.addError(msg) {
				h.notef("%s: run %d failed: %s", sm.row, s.Runs, msg)
			}
			continue
		}
		if sm.mem != nil {
			s.Memory = append(s.Memory, *sm.mem)
			continue
		}
		s.Samples = append(s.Samples, roundMS(sm.ms))
	}
}

// describeErr renders a run's failure: the failed step, then the error as
// sandboxctl renders errors ("create: no capacity (resource exhausted)").
func (h *harness) describeErr(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step + ": " + h.describeErr(se.err)
	}
	return h.describe(err)
}

// results returns the rows in report order.
func (h *harness) results() []*series { return h.order }

// msSince returns the time since start in milliseconds.
func msSince(start time.Time) float64 { return msBetween(start, time.Now()) }

// msBetween returns the time from start to end in milliseconds.
func msBetween(start, end time.Time) float64 {
	return float64(end.Sub(start)) / float64(time.Millisecond)
}

// roundMS rounds a latency to the microsecond: finer digits are clock noise
// and only bloat the JSON.
func roundMS(ms float64) float64 { return math.Round(ms*1000) / 1000 }
