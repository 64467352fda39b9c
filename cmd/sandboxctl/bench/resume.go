package bench

import (
	"context"
	"fmt"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// The code of the resume scenario: resumeSetCode stores a variable in the
// sandbox's interpreter before it is paused, and resumeCode, timed after
// the pause, prints it, so that a run succeeds only when the sandbox came
// back with its state.
const (
	resumeSetCode = "x = 1"
	resumeCode    = "print(x)"
	resumeWant    = "1\n"
)

// resumeItem is resume: one sandbox, taken from the pool and given
// resumeSetCode at setup (untimed), is paused (untimed) before each run;
// the run times an Exec of resumeCode until its result, which the daemon
// can only give after it resumed the sandbox. The sandbox is reused from
// run to run, paused and resumed each time, as a client's sandbox is; it
// is destroyed at close. Setup pauses it once too, so that a daemon
// without PauseSandbox fails there rather than in every run. A failed run
// may leave the sandbox ended or without its state (a failed pause or
// resume ends it), so the next run first replaces it, untimed.
func (d *daemonBench) resumeItem() *benchItem {
	var (
		id    string
		stale bool // the last run failed: replace the sandbox first
	)
	// replace destroys the sandbox, if any, and readies a new one.
	replace := func(ctx context.Context) error {
		d.destroyDetached(ctx, id)
		id, stale = "", false
		sb, err := d.create(ctx, fromPool)
		if err != nil {
			return &stepError{"create", err}
		}
		id = sb.GetSandboxId()
		out, _, err := d.execCall(ctx, id, sandboxv1.Language_LANGUAGE_PYTHON, resumeSetCode, true)
		if err == nil {
			err = out.check("")
		}
		if err != nil {
			return &stepError{fmt.Sprintf("exec %q", resumeSetCode), err}
		}
		return nil
	}
	return &benchItem{
		name: scenarioResume, kind: kindScenario, rows: []string{scenarioResume},
		setup: func(ctx context.Context) error {
			if err := replace(ctx); err != nil {
				return err
			}
			if err := d.pause(ctx, id); err != nil {
				return &stepError{"pause", err}
			}
			return nil
		},
		round: func(ctx context.Context) []sample {
			if stale || id == "" {
				if err := replace(ctx); err != nil {
					stale = true
					return []sample{{row: scenarioResume, err: &stepError{"replacing the sandbox", err}}}
				}
			}
			s := d.resumeRun(ctx, id)
			stale = s.err != nil
			return []sample{s}
		},
		close: func(ctx context.Context) error {
			if id != "" {
				d.destroy(ctx, id)
			}
			return nil
		},
	}
}

// resumeRun is one run of resume in sandbox id: pause it (untimed), then
// time an Exec of resumeCode until its result. The rest of the Exec is
// drained, untimed, so that the next run's pause finds the sandbox idle.
func (d *daemonBench) resumeRun(ctx context.Context, id string) sample {
	if err := d.pause(ctx, id); err != nil {
		return sample{row: scenarioResume, err: &stepError{"pause", err}}
	}
	start := time.Now()
	out, at, err := d.execCall(ctx, id, sandboxv1.Language_LANGUAGE_PYTHON, resumeCode, true)
	s := sample{row: scenarioResume, ms: msBetween(start, at)}
	if err != nil {
		s.err = &stepError{"exec", err}
	} else {
		s.err = out.check(resumeWant)
	}
	return s
}
