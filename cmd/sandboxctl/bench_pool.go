package main

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

// poolPollInterval is how often bench asks ListPools while it waits for a
// refill: short next to a boot (a second or more), so a refilled pool is
// seen at once, and the RPC is cheap enough not to disturb the daemon.
const poolPollInterval = 50 * time.Millisecond

// poolWatcher follows the daemon's warm pools through ListPools, which a
// daemon without pools does not implement: then it waits for nothing.
type poolWatcher struct {
	client sandboxv1.SandboxServiceClient
	wait   time.Duration // --pool-wait
	notef  func(format string, args ...any)

	mu            sync.Mutex
	unimplemented bool              // ListPools answered Unimplemented
	atStart       []*sandboxv1.Pool // the pools before the first run
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

// poolsSettled reports whether every pool holds its target of idle
// sandboxes (or as many as its max_total leaves room for) and is booting
// none.
func poolsSettled(pools []*sandboxv1.Pool) bool {
	for _, p := range pools {
		full := p.GetIdle() >= p.GetTargetIdle() ||
			(p.GetMaxTotal() > 0 && p.GetIdle()+p.GetInUse() >= p.GetMaxTotal())
		if p.GetBooting() > 0 || !full {
			return false
		}
	}
	return true
}

// describePools renders pools briefly for notes.
func describePools(pools []*sandboxv1.Pool) string {
	parts := make([]string, len(pools))
	for i, p := range pools {
		parts[i] = fmt.Sprintf("%s: %d/%d idle, %d booting", p.GetTemplate(), p.GetIdle(), p.GetTargetIdle(), p.GetBooting())
		if e := p.GetLastError(); e != "" {
			parts[i] += ", last error: " + e
		}
	}
	return strings.Join(parts, "; ")
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
