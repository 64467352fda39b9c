package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// How often bench asks ListPools while it waits.
const (
	// poolPollInterval, between runs and for the snapshot: short next to
	// a boot (a second or more), so a refilled pool is seen at once, and
	// the RPC is cheap enough not to disturb the daemon.
	poolPollInterval = 50 * time.Millisecond
	// refillPollInterval, while refill times a refill: restoring a pool of
	// two takes a few hundred ms, and a 10 ms step keeps the timing error
	// to a few percent, while a ListPools costs the daemon well under a
	// millisecond.
	refillPollInterval = 10 * time.Millisecond
)

// poolWatcher follows the daemon's warm pools through ListPools, which a
// daemon without pools does not implement: then it waits for nothing.
type poolWatcher struct {
	client sandboxv1.SandboxServiceClient
	wait   time.Duration // --pool-wait
	notef  func(format string, args ...any)

	mu            sync.Mutex
	unimplemented bool              // ListPools answered Unimplemented
	atStart       []*sandboxv1.Pool // the pools before the first run (after the snapshot wait)
	timedOut      bool              // a wait has timed out (noted once)
}

// probe reaches the daemon and records its pools. Unimplemented is not an
// error: the daemon predates pools. Any other failure is (an unreachable
// daemon fails here, before any run).
func (p *poolWatcher) probe(ctx context.Context) error {
	pools, err := p.list(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.atStart = pools
	switch {
	case p.unimplemented:
		p.notef("this daemon does not implement ListPools: bench cannot wait for pool refills, burst defaults to %d sandboxes and warm runs may be cold starts", minBurst)
	case len(pools) == 0:
		p.notef("the daemon has no warm pools: warm runs will be cold starts")
	}
	return nil
}

// infos returns the pools at the start for the report: nil (JSON null)
// when the daemon does not implement ListPools.
func (p *poolWatcher) infos() []poolInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.unimplemented {
		return nil
	}
	return poolInfos(p.atStart)
}

// list returns the pools; none, without error, when ListPools is not
// implemented.
func (p *poolWatcher) list(ctx context.Context) ([]*sandboxv1.Pool, error) {
	p.mu.Lock()
	unimplemented := p.unimplemented
	p.mu.Unlock()
	if unimplemented {
		return nil, nil
	}
	resp, err := p.client.ListPools(ctx, &sandboxv1.ListPoolsRequest{})
	if status.Code(err) == codes.Unimplemented {
		p.mu.Lock()
		p.unimplemented = true
		p.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetPools(), nil
}

// settle waits, at most p.wait, until every pool is refilled and boots
// nothing (poolsSettled), so that the next run finds a warm sandbox and no
// refill competes with it for the CPU. It gives up silently on ListPools
// errors (the run itself will show what is wrong) and notes the first
// timeout.
func (p *poolWatcher) settle(ctx context.Context) {
	if p.wait <= 0 {
		return
	}
	deadline := time.Now().Add(p.wait)
	for {
		pools, err := p.list(ctx)
		if err != nil || poolsSettled(pools) {
			return
		}
		if time.Now().After(deadline) {
			p.mu.Lock()
			first := !p.timedOut
			p.timedOut = true
			p.mu.Unlock()
			if first {
				p.notef("the warm pools did not refill within %s (%s): measuring anyway (--pool-wait sets the wait)", p.wait, describePools(pools))
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poolPollInterval):
		}
	}
}

// poolsSettled reports whether every pool is full (poolFull) and is
// booting none.
func poolsSettled(pools []*sandboxv1.Pool) bool {
	for _, p := range pools {
		if p.GetBooting() > 0 || !poolFull(p) {
			return false
		}
	}
	return true
}

// poolFull reports whether p holds its target of idle sandboxes, or as
// many as its max_total leaves room for.
func poolFull(p *sandboxv1.Pool) bool {
	return p.GetIdle() >= p.GetTargetIdle() ||
		(p.GetMaxTotal() > 0 && p.GetIdle()+p.GetInUse() >= p.GetMaxTotal())
}

// waitSnapshot waits, at most p.wait, until no snapshot of template's pool
// is building (snapshotPools says which), and returns those pools as last
// seen, and how long it waited. The whole list it last saw becomes the
// pools of the report: what the runs met. An error is ListPools' or ctx's.
func (p *poolWatcher) waitSnapshot(ctx context.Context, template string) ([]*sandboxv1.Pool, time.Duration, error) {
	start := time.Now()
	for {
		pools, err := p.list(ctx)
		if err != nil {
			return nil, time.Since(start), err
		}
		mine := snapshotPools(pools, template)
		if !snapshotBuilding(mine) || time.Since(start) >= p.wait {
			p.mu.Lock()
			if !p.unimplemented {
				p.atStart = pools
			}
			p.mu.Unlock()
			return mine, time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return nil, time.Since(start), ctx.Err()
		case <-time.After(poolPollInterval):
		}
	}
}

// snapshotPools returns the pools whose snapshot serves template: its own
// (findPool), or every pool when the template is the unnamed default and
// findPool cannot tell which; none for a template without a pool.
func snapshotPools(pools []*sandboxv1.Pool, template string) []*sandboxv1.Pool {
	if p := findPool(pools, template); p != nil {
		return []*sandboxv1.Pool{p}
	}
	if template == "" {
		return pools
	}
	return nil
}

// snapshotBuilding reports whether the snapshot of any of pools is being
// built. A daemon that predates snapshots builds none.
func snapshotBuilding(pools []*sandboxv1.Pool) bool {
	for _, p := range pools {
		if p.GetSnapshot().GetState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING {
			return true
		}
	}
	return false
}

// waitRefill polls ListPools every refillPollInterval until the pool of
// template is full (poolFull) and returns the idle sandboxes it then holds.
// It fails when ctx ends, after p.wait when that is set, or when the pool
// is gone.
func (p *poolWatcher) waitRefill(ctx context.Context, template string) (int, error) {
	if p.wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.wait)
		defer cancel()
	}
	var last *sandboxv1.Pool
	for {
		pools, err := p.list(ctx)
		if err != nil {
			if last != nil && ctx.Err() != nil {
				return 0, fmt.Errorf("the pool did not refill in time (%s)", describePools([]*sandboxv1.Pool{last}))
			}
			return 0, fmt.Errorf("listing the pools: %w", err)
		}
		if last = findPool(pools, template); last == nil {
			return 0, fmt.Errorf("template %q has no pool any more", template)
		}
		if poolFull(last) {
			return int(last.GetIdle()), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the pool did not refill in time (%s)", describePools([]*sandboxv1.Pool{last}))
		case <-time.After(refillPollInterval):
		}
	}
}

// describePools renders pools briefly for notes.
func describePools(pools []*sandboxv1.Pool) string {
	parts := make([]string, len(pools))
	for i, p := range pools {
		parts[i] = fmt.Sprintf("%s: %d/%d idle, %d booting", p.GetTemplate(), p.GetIdle(), p.GetTargetIdle(), p.GetBooting())
		if sn := snapshotName(p.GetSnapshot()); sn != "" {
			parts[i] += ", snapshot " + sn
		}
		if e := p.GetLastError(); e != "" {
			parts[i] += ", last error: " + e
		}
	}
	return strings.Join(parts, "; ")
}

// snapshotName is a snapshot state without its enum prefix, lower case
// ("ready"); empty for a daemon that predates snapshots.
func snapshotName(sn *sandboxv1.Snapshot) string {
	if sn == nil {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(sn.GetState().String(), "SNAPSHOT_STATE_"))
}

// findPool returns the pool of template; for an empty template (the
// policy's default, unknown to the client) the only pool, if there is
// exactly one. Nil when none fits.
func findPool(pools []*sandboxv1.Pool, template string) *sandboxv1.Pool {
	if template == "" {
		if len(pools) == 1 {
			return pools[0]
		}
		return nil
	}
	for _, p := range pools {
		if p.GetTemplate() == template {
			return p
		}
	}
	return nil
}

// burstSize is burst's default K: twice the target_idle of pool, so that
// half the burst is served warm and half must boot, and at least minBurst.
func burstSize(pool *sandboxv1.Pool) int {
	return max(minBurst, 2*int(pool.GetTargetIdle()))
}

// awaitSnapshot waits, once per benchmark and untimed (at most
// --pool-wait), until the template's snapshot is no longer building, so
// that cold creates are restores rather than boots. It notes what the
// runs will meet when that is not a ready snapshot; a daemon that predates
// snapshots gets no note (startNotes speaks of its runs).
func (d *daemonBench) awaitSnapshot(ctx context.Context) {
	d.mu.Lock()
	done := d.snapshotWaited
	d.snapshotWaited = true
	d.mu.Unlock()
	if done {
		return
	}
	pools, waited, err := d.pools.waitSnapshot(ctx, d.templateName())
	if err != nil {
		return // the runs will show what is wrong
	}
	for _, p := range pools {
		sn := p.GetSnapshot()
		switch sn.GetState() {
		case sandboxv1.SnapshotState_SNAPSHOT_STATE_READY:
			if waited >= poolPollInterval {
				d.notef("waited %s for the snapshot of template %q", waited.Round(time.Millisecond), p.GetTemplate())
			}
		case sandboxv1.SnapshotState_SNAPSHOT_STATE_BUILDING:
			d.notef("the snapshot of template %q was still building after %s: cold runs boot in full until it is ready (--pool-wait sets the wait)", p.GetTemplate(), waited.Round(time.Millisecond))
		case sandboxv1.SnapshotState_SNAPSHOT_STATE_FAILED:
			d.notef("the snapshot of template %q failed (%s): cold runs boot in full", p.GetTemplate(), sn.GetLastError())
		case sandboxv1.SnapshotState_SNAPSHOT_STATE_DISABLED:
			d.notef("template %q has no snapshot (snapshot: false in the policy): cold runs boot in full, like boot", p.GetTemplate())
		}
	}
}
