package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress tells the user on stderr how far the benchmark got. Its methods
// are safe for concurrent use (burst notes failures from many goroutines).
type progress interface {
	// start begins the runs: total runs in all, in rounds rounds.
	start(total, rounds int)
	// step announces a run of item in round (0-based); warm for warm-up.
	step(item string, round, rounds int, warm bool)
	// stepDone reports the samples of the run step announced.
	stepDone(samples []sample)
	// roundDone ends a round.
	roundDone(round, rounds int)
	// note prints a line of its own ("sandboxctl: bench: MSG").
	note(msg string)
	// finish ends the progress display.
	finish()
}

// barRefresh is how often the bar redraws at most: often enough to look
// alive, rarely enough to cost nothing next to the runs it times.
const barRefresh = 100 * time.Millisecond

// newProgress returns a bar on w when w is a terminal, else lines (CI
// logs). note prints a line of its own (Env.Note: "sandboxctl: bench: MSG").
func newProgress(w io.Writer, note func(string)) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{w: w, printNote: note}
	}
	return &lineProgress{printNote: note}
}

// lineProgress prints one line per round, with an entry per row:
//
//	sandboxctl: bench: round 3/22: warm 41.2 ms, cold 1203 ms, burst 4x p50 812 ms
type lineProgress struct {
	mu        sync.Mutex
	printNote func(string)
	warm      bool
	samples   []sample
}

func (p *lineProgress) start(total, rounds int) {
	p.note(fmt.Sprintf("%d runs in %d rounds", total, rounds))
}

func (p *lineProgress) step(_ string, _, _ int, warm bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warm = p.warm || warm
}

func (p *lineProgress) stepDone(samples []sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, samples...)
}

func (p *lineProgress) roundDone(round, rounds int) {
	p.mu.Lock()
	line := roundLine(round, rounds, p.warm, p.samples)
	p.samples, p.warm = nil, false
	p.mu.Unlock()
	p.note(line)
}

func (p *lineProgress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.printNote(msg)
}

func (p *lineProgress) finish() {}

// roundLine renders a round's samples: per row in order of appearance, its
// latency (a memory row's cgroup usage), "Nx p50 LATENCY" for several
// samples, and failures.
func roundLine(round, rounds int, warm bool, samples []sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "round %d/%d", round+1, rounds)
	if warm {
		b.WriteString(" (warm-up)")
	}
	b.WriteString(":")
	var order []string
	byRow := map[string][]sample{}
	for _, s := range samples {
		if _, ok := byRow[s.row]; !ok {
			order = append(order, s.row)
		}
		byRow[s.row] = append(byRow[s.row], s)
	}
	for i, row := range order {
		if i > 0 {
			b.WriteString(",")
		}
		var ok []float64
		unit := "ms"
		for _, s := range byRow[row] {
			switch {
			case s.err != nil:
			case s.mem != nil:
				ok, unit = append(ok, float64(s.mem.cgroup)/(1<<20)), "MiB"
			default:
				ok = append(ok, s.ms)
			}
		}
		n, failed := len(byRow[row]), len(byRow[row])-len(ok)
		fmt.Fprintf(&b, " %s", row)
		switch {
		case len(ok) == 0:
			b.WriteString(" failed")
		case n == 1:
			fmt.Fprintf(&b, " %s %s", fmtMS(ok[0]), unit)
		default:
			fmt.Fprintf(&b, " %dx p50 %s %s", n, fmtMS(summarize(ok).P50), unit)
		}
		if failed > 0 && len(ok) > 0 {
			fmt.Fprintf(&b, " (%d failed)", failed)
		}
	}
	if len(order) == 0 {
		b.WriteString(" nothing ran")
	}
	return b.String()
}

// barProgress draws a progress bar over all runs on a terminal.
type barProgress struct {
	mu        sync.Mutex
	w         io.Writer
	printNote func(string)
	bar       *progressbar.ProgressBar
}

func (p *barProgress) start(total, _ int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(barRefresh),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func (p *barProgress) step(item string, round, rounds int, warm bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	desc := fmt.Sprintf("round %d/%d %-17s", round+1, rounds, item)
	if warm {
		desc = fmt.Sprintf("warm-up %d %-17s", round+1, item)
	}
	p.bar.Describe(desc)
}

func (p *barProgress) stepDone([]sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Add(1)
}

func (p *barProgress) roundDone(int, int) {}

func (p *barProgress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	p.printNote(msg)
}

func (p *barProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
	}
}
