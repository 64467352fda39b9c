package pool

import (
	"context"
	"time"
)

// refillLoop boots sandboxes until the pool holds TargetIdle, within
// MaxTotal, MaxBooting and the host limit, backing off after failures.
func (p *Pool) refillLoop(ctx context.Context) {
	defer close(p.done)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-retry:
			retry = nil
		}
		if wait := p.startBoots(ctx); wait > 0 && retry == nil {
			retry = time.After(wait)
		}
	}
}

// startBoots starts as many refill boots as the limits allow. It returns
// the back-off to wait before trying again, or 0.
func (p *Pool) startBoots(ctx context.Context) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backoff > 0 {
		return p.backoff
	}
	for !p.closed &&
		len(p.idle)+p.refilling < p.cfg.TargetIdle &&
		p.total() < p.cfg.MaxTotal &&
		p.refilling < p.cfg.MaxBooting {
		if !p.slots.TryAcquire() {
			return time.Second // host full: look again later
		}
		p.refilling++
		p.pending.Go(func() { p.refillOne(ctx) })
	}
	return 0
}

// refillOne boots one sandbox into the pool.
func (p *Pool) refillOne(ctx context.Context) {
	bctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	start := time.Now()
	sb, err := p.boot(bctx, true)
	p.mu.Lock()
	p.refilling--
	p.broadcast()
	if err != nil {
		p.recordFailure(err)
		p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
		wait := p.backoff
		p.mu.Unlock()
		p.slots.Release()
		time.AfterFunc(wait, func() { p.clearBackoff(); p.kick() })
		return
	}
	p.backoff = 0
	if p.closed || len(p.idle) >= p.cfg.TargetIdle {
		// Shrunk or closed while booting: this one is not needed.
		p.mu.Unlock()
		p.discard(sb)
		return
	}
	p.idle = append(p.idle, sb)
	p.mu.Unlock()
	p.log.Debug("warm sandbox ready", "boot", time.Since(start).Round(time.Millisecond))
	go p.watchIdle(sb)
	p.kick()
}

func (p *Pool) clearBackoff() {
	p.mu.Lock()
	p.backoff = 0
	p.mu.Unlock()
}

// watchIdle replaces an idle sandbox that dies while it waits in the pool.
func (p *Pool) watchIdle(sb Sandbox) {
	<-sb.Exited()
	p.mu.Lock()
	for i, s := range p.idle {
		if s == sb {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.failures++
			p.lastErr = "an idle sandbox died"
			p.mu.Unlock()
			p.log.Warn("idle sandbox died; replacing it")
			p.discard(sb)
			p.kick()
			return
		}
	}
	p.mu.Unlock() // handed out meanwhile: its owner handles its end
}

// discard destroys a sandbox that never left the pool and frees its slot.
func (p *Pool) discard(sb Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sb.Destroy(ctx); err != nil {
		p.log.Warn("destroying pooled sandbox", "err", err)
	}
	p.slots.Release()
}
