package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// drainLimit bounds a refill run's drain at drainLimit x target_idle
// creates. A pool hit takes about a millisecond and a refill restores a
// sandbox in hundreds, so a drain takes target_idle creates, rarely one
// more; a pool still not empty after twice that refills as fast as bench
// takes from it, and there is no refill to time.
const drainLimit = 2

// refillItem is refill: each run drains the template's pool, holding what
// it takes, and times how long the daemon takes to bring the pool back to
// its target; the held sandboxes are destroyed afterwards, untimed. The
// harness's wait before each run starts it with the pool full and nothing
// booting. Setup waits for the snapshot, so that refills are restores, and
// finds the pool.
func (d *daemonBench) refillItem() *benchItem {
	var (
		template string
		target   int
	)
	return &benchItem{
		name: scenarioRefill, kind: kindScenario, rows: []string{scenarioRefill},
		setup: func(ctx context.Context) error {
			d.awaitSnapshot(ctx)
			pools, err := d.pools.list(ctx)
			if err != nil {
				return fmt.Errorf("listing the pools: %w", err)
			}
			pool := findPool(pools, d.templateName())
			switch {
			case len(pools) == 0:
				return errors.New("the daemon reports no warm pool to refill")
			case pool == nil && d.templateName() == "":
				return errors.New("cannot tell which pool serves the default template: pass --template")
			case pool == nil:
				return fmt.Errorf("template %q has no warm pool to refill", d.templateName())
			case pool.GetTargetIdle() == 0:
				return fmt.Errorf("the pool of template %q keeps no idle sandboxes (target 0)", pool.GetTemplate())
			}
			template, target = pool.GetTemplate(), int(pool.GetTargetIdle())
			return nil
		},
		round: func(ctx context.Context) []sample {
			s, held := d.refillRun(ctx, template, target)
			for _, id := range held {
				d.destroyDetached(ctx, id)
			}
			return []sample{s}
		},
	}
}

// refillRun drains the pool of template, waits until it is full again,
// and times both from the first take, when the pool starts refilling. The
// sample counts the sandboxes the pool then holds, for the rate. It
// returns the sandboxes it took, for the caller to destroy.
func (d *daemonBench) refillRun(ctx context.Context, template string, target int) (sample, []string) {
	start := time.Now()
	held, err := d.drain(ctx, template, target)
	if err != nil {
		return sample{row: scenarioRefill, err: err}, held
	}
	n, err := d.pools.waitRefill(ctx, template)
	s := sample{row: scenarioRefill, ms: msSince(start), sandboxes: n}
	if err != nil {
		s.err = &stepError{"waiting for the refill", err}
	} else if n == 0 {
		s.err = errors.New("the pool refilled to no idle sandbox: its max_total leaves no room while bench holds the drained ones")
	}
	return s, held
}

// drain takes sandboxes from the pool of template until it has none idle:
// until a create comes back cold (the pool was empty) or, once it took
// target, ListPools shows no idle sandbox; at most drainLimit x target. It
// returns the IDs it took, also on error.
func (d *daemonBench) drain(ctx context.Context, template string, target int) ([]string, error) {
	var held []string
	for len(held) < drainLimit*target {
		sb, err := d.create(ctx, fromPool)
		if err != nil {
			return held, &stepError{"draining the pool", err}
		}
		held = append(held, sb.GetSandboxId())
		if sb.GetColdStart() {
			return held, nil
		}
		if len(held) < target {
			continue
		}
		pools, err := d.pools.list(ctx)
		if err != nil {
			return held, &stepError{"listing the pools", err}
		}
		if p := findPool(pools, template); p == nil || p.GetIdle() == 0 {
			return held, nil
		}
	}
	return held, fmt.Errorf("the pool still had idle sandboxes after %d creates: it refills as fast as bench takes from it", len(held))
}
