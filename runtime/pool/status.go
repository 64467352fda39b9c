package pool

import "sync"

// Status is a snapshot of a pool.
type Status struct {
	Template   string
	Idle       int
	InUse      int
	Booting    int
	TargetIdle int
	MaxTotal   int
	Hits       int64
	Misses     int64
	Failures   int64
	LastError  string
}

// Status returns a snapshot of the pool's counters.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Template: p.template, Idle: len(p.idle), InUse: p.inUse,
		Booting: p.refilling + p.coldBooting, TargetIdle: p.cfg.TargetIdle, MaxTotal: p.cfg.MaxTotal,
		Hits: p.hits, Misses: p.misses, Failures: p.failures, LastError: p.lastErr,
	}
}

// Resize applies new sizes: the pool grows in the background, extra idle
// sandboxes are destroyed at once, sandboxes in use are not touched.
func (p *Pool) Resize(cfg Config) {
	p.mu.Lock()
	p.cfg = cfg
	var extra []Sandbox
	if n := len(p.idle) - cfg.TargetIdle; n > 0 {
		extra = append(extra, p.idle[:n]...) // the oldest go first
		p.idle = append([]Sandbox(nil), p.idle[n:]...)
	}
	p.mu.Unlock()
	p.discardAll(extra)
	p.kick()
}

// Close stops refilling and destroys the idle sandboxes. Sandboxes in use
// stay with their owners, who still call Release.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.broadcast()
	p.mu.Unlock()
	p.stop()
	<-p.done
	p.pending.Wait() // boots in flight see the cancel and clean up
	p.discardAll(idle)
}

func (p *Pool) discardAll(sbs []Sandbox) {
	var wg sync.WaitGroup
	for _, sb := range sbs {
		wg.Go(func() { p.discard(sb) })
	}
	wg.Wait()
}
