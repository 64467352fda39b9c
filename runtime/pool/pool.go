// Package pool keeps warm sandboxes of one template ready: booted, agent
// answering, warm imports done. Acquire hands one out in O(1) and a refill
// loop boots replacements in the background, bounded by the pool's and the
// host's limits. A sandbox leaves the pool exactly once and never returns.
package pool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// Sandbox is what the pool needs of a booted sandbox.
type Sandbox interface {
	// Exited is closed when the sandbox ended.
	Exited() <-chan struct{}
	// Destroy tears the sandbox down; idempotent.
	Destroy(ctx context.Context) error
}

// Booter boots one warm sandbox of the pool's template. idle is true for a
// refill, whose sandbox waits in the pool: the booter may then spend time
// that makes the sandbox's first use faster; false when a client waits.
type Booter func(ctx context.Context, idle bool) (Sandbox, error)

// Slots is the host-wide sandbox limit the pool's boots count against.
type Slots interface {
	// TryAcquire takes a slot; false when the host is full.
	TryAcquire() bool
	// Release gives a slot back.
	Release()
}

// Config are a pool's sizes (policy pools[]).
type Config struct {
	// TargetIdle is how many warm sandboxes to keep ready.
	TargetIdle int
	// MaxTotal bounds idle + booting + in-use sandboxes of the template.
	MaxTotal int
	// MaxBooting bounds concurrent refill boots.
	MaxBooting int
}

// Refill back-off after failed boots: a broken template must not make the
// pool boot in a hot loop, and a passing fault should heal within a minute.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// bootTimeout bounds one refill boot.
const bootTimeout = 2 * time.Minute

// Pool is safe for concurrent use.
type Pool struct {
	template string
	boot     Booter
	slots    Slots
	log      *slog.Logger

	mu          sync.Mutex
	cfg         Config
	idle        []Sandbox // oldest first
	refilling   int       // refill boots in progress
	coldBooting int       // cold boots for clients in progress
	inUse       int       // handed out, not yet released
	hits        int64
	misses      int64
	failures    int64
	lastErr     string
	backoff     time.Duration
	closed      bool

	changed chan struct{} // closed and replaced when idle or refilling change
	wake    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
	pending sync.WaitGroup // refill boots in flight; Close waits for them
}

// New starts a pool and its refill loop.
func New(template string, cfg Config, boot Booter, slots Slots, log *slog.Logger) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		template: template, boot: boot, slots: slots, log: log.With("pool", template), cfg: cfg,
		wake: make(chan struct{}, 1), changed: make(chan struct{}), stop: cancel, done: make(chan struct{}),
	}
	go p.refillLoop(ctx)
	p.kick()
	return p
}

// kick wakes the refill loop.
func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// total counts every sandbox of the pool's template; call with mu held.
func (p *Pool) total() int { return len(p.idle) + p.refilling + p.coldBooting + p.inUse }

// Acquire returns a warm sandbox (cold false) or, when none is idle or
// bypass is set, boots one for the caller (cold true). When the template is
// at MaxTotal only because refill boots are in flight, it waits for them.
// It fails with ResourceExhausted when the template is at MaxTotal or the
// host is full. The caller owns the sandbox and must call Release when it
// is gone.
func (p *Pool) Acquire(ctx context.Context, bypass bool) (Sandbox, bool, error) {
	return p.acquire(ctx, bypass, p.boot)
}

// BootWith boots a sandbox for the caller with boot instead of the pool's
// booter (a sandbox with other limits than the template's), counted
// against MaxTotal and the host's slots like any sandbox of the template.
// The caller must call Release when it is gone.
func (p *Pool) BootWith(ctx context.Context, boot Booter) (Sandbox, error) {
	sb, _, err := p.acquire(ctx, true, boot)
	return sb, err
}

func (p *Pool) acquire(ctx context.Context, bypass bool, boot Booter) (Sandbox, bool, error) {
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, false, fmt.Errorf("pool %q is closed: %w", p.template, errdefs.ErrUnavailable)
		}
		if len(p.idle) > 0 && !bypass {
			sb := p.idle[0]
			p.idle[0] = nil
			p.idle = p.idle[1:]
			p.inUse++
			p.hits++
			p.mu.Unlock()
			p.kick()
			return sb, false, nil
		}
		if p.total() < p.cfg.MaxTotal {
			break
		}
		if p.refilling == 0 || bypass {
			p.mu.Unlock()
			return nil, false, fmt.Errorf("template %q is at its limit of %d sandboxes (policy pools[].max_total): destroy one first: %w", p.template, p.cfg.MaxTotal, errdefs.ErrResourceExhausted)
		}
		// A refill boot holds the last place: wait for it to land.
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		p.mu.Lock()
	}
	if !p.slots.TryAcquire() {
		p.mu.Unlock()
		return nil, false, errHostFull
	}
	p.coldBooting++
	p.misses++
	p.mu.Unlock()

	sb, err := boot(ctx, false)
	p.mu.Lock()
	p.coldBooting--
	if err != nil {
		p.recordFailure(err)
		p.mu.Unlock()
		p.slots.Release()
		return nil, true, err
	}
	p.inUse++
	p.mu.Unlock()
	p.kick()
	return sb, true, nil
}

// broadcast wakes every Acquire waiting for the pool to change; call with
// mu held.
func (p *Pool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// errHostFull is returned when the host-wide limit stops a boot.
var errHostFull = fmt.Errorf("host limit of sandboxes reached (policy host.max_sandboxes): destroy a sandbox first: %w", errdefs.ErrResourceExhausted)

// Admit takes a place under MaxTotal and a host slot for a sandbox of the
// template made outside the pool (a paused sandbox being resumed), without
// waiting: ResourceExhausted when either is full. Release gives it back.
func (p *Pool) Admit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return fmt.Errorf("pool %q is closed: %w", p.template, errdefs.ErrUnavailable)
	case p.total() >= p.cfg.MaxTotal:
		return fmt.Errorf("template %q is at its limit of %d sandboxes (policy pools[].max_total): destroy one first: %w", p.template, p.cfg.MaxTotal, errdefs.ErrResourceExhausted)
	case !p.slots.TryAcquire():
		return errHostFull
	}
	p.inUse++
	return nil
}

// Release says that a sandbox Acquire returned is gone (destroyed or dead),
// freeing its place under MaxTotal and its host slot.
func (p *Pool) Release() {
	p.mu.Lock()
	p.inUse--
	p.mu.Unlock()
	p.slots.Release()
	p.kick()
}

// NoteFailure counts a failure the booter recovered from (a restore that
// fell back to a boot) in the pool's failures and last error.
func (p *Pool) NoteFailure(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recordFailure(err)
}

// recordFailure notes a failed boot; call with mu held.
func (p *Pool) recordFailure(err error) {
	p.failures++
	p.lastErr = err.Error()
	p.log.Warn("sandbox boot failed", "err", err)
}
