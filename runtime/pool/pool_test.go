package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/runtime/errdefs"
)

// fakeSandbox stands in for a booted sandbox in these unit tests of the
// pool's bookkeeping (the real path is covered end to end in cmd/sandboxd).
type fakeSandbox struct {
	exited    chan struct{}
	destroyed atomic.Int32
	once      sync.Once
}

func newFake() *fakeSandbox { return &fakeSandbox{exited: make(chan struct{})} }

func (f *fakeSandbox) Exited() <-chan struct{} { return f.exited }

func (f *fakeSandbox) Destroy(context.Context) error {
	f.destroyed.Add(1)
	f.die()
	return nil
}

func (f *fakeSandbox) die() { f.once.Do(func() { close(f.exited) }) }

// fakeBooter counts boots and can fail them.
type fakeBooter struct {
	delay time.Duration // how long a boot takes
	mu    sync.Mutex
	boots int
	fail  bool
	made  []*fakeSandbox
	idle  []bool // the idle flag of each boot, in order
}

func (b *fakeBooter) boot(_ context.Context, idle bool) (Sandbox, error) {
	time.Sleep(b.delay)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.boots++
	b.idle = append(b.idle, idle)
	if b.fail {
		return nil, errors.New("boot failed")
	}
	f := newFake()
	b.made = append(b.made, f)
	return f, nil
}

type countSlots struct {
	mu        sync.Mutex
	used, max int
}

func (c *countSlots) TryAcquire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used >= c.max {
		return false
	}
	c.used++
	return true
}

func (c *countSlots) Release() {
	c.mu.Lock()
	c.used--
	c.mu.Unlock()
}

func (c *countSlots) inUse() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHitsThenMissThenRefill guarantees the pool contract: with idle=2 two
// acquisitions are hits, the third boots for the caller, and the pool
// refills to its target.
func TestHitsThenMissThenRefill(t *testing.T) {
	b := &fakeBooter{delay: 100 * time.Millisecond}
	slots := &countSlots{max: 100}
	p := New("python", Config{TargetIdle: 2, MaxTotal: 10, MaxBooting: 1}, b.boot, slots, quiet)
	defer p.Close()
	waitFor(t, "2 idle", func() bool { return p.Status().Idle == 2 })
	for i, wantCold := range []bool{false, false, true} {
		_, cold, err := p.Acquire(context.Background(), false)
		if err != nil || cold != wantCold {
			t.Fatalf("acquire %d: cold=%v err=%v, want cold=%v", i, cold, err, wantCold)
		}
	}
	waitFor(t, "refill to 2", func() bool { return p.Status().Idle == 2 })
	st := p.Status()
	if st.Hits != 2 || st.Misses != 1 || st.InUse != 3 {
		t.Fatalf("status %+v", st)
	}
	if slots.inUse() != 5 {
		t.Fatalf("host slots used %d, want 5 (3 in use + 2 idle)", slots.inUse())
	}
	// Refills are told their sandbox waits idle (the booter may prefault
	// it); the boot for the caller of the miss is not.
	b.mu.Lock()
	defer b.mu.Unlock()
	refills := 0
	for _, idle := range b.idle {
		if idle {
			refills++
		}
	}
	if len(b.idle) != 5 || refills != 4 {
		t.Fatalf("idle flags of the boots %v, want 4 refills (true) and the miss (false)", b.idle)
	}
}

// TestNeverHandsOutTwice guarantees that concurrent acquisitions never get
// the same sandbox.
func TestNeverHandsOutTwice(t *testing.T) {
	b := &fakeBooter{}
	p := New("python", Config{TargetIdle: 8, MaxTotal: 200, MaxBooting: 8}, b.boot, &countSlots{max: 1000}, quiet)
	defer p.Close()
	waitFor(t, "8 idle", func() bool { return p.Status().Idle == 8 })
	var mu sync.Mutex
	seen := map[Sandbox]bool{}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			sb, _, err := p.Acquire(context.Background(), false)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[sb] {
				t.Error("sandbox handed out twice")
			}
			seen[sb] = true
		})
	}
	wg.Wait()
}

// TestMaxTotalIsResourceExhausted guarantees that the template limit counts
// idle, booting and in-use sandboxes and is reported as ResourceExhausted.
func TestMaxTotalIsResourceExhausted(t *testing.T) {
	b := &fakeBooter{}
	p := New("python", Config{TargetIdle: 1, MaxTotal: 2, MaxBooting: 1}, b.boot, &countSlots{max: 100}, quiet)
	defer p.Close()
	waitFor(t, "1 idle", func() bool { return p.Status().Idle == 1 })
	p.Acquire(context.Background(), false)
	waitFor(t, "refill", func() bool { return p.Status().Idle == 1 })
	p.Acquire(context.Background(), false)
	_, _, err := p.Acquire(context.Background(), false)
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("third acquire over max_total 2: %v", err)
	}
	p.Release()
	// The refill takes the freed place; Acquire waits for it instead of
	// failing.
	if _, _, err := p.Acquire(context.Background(), false); err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
}

// TestBurstIsServedWithoutDeadlock guarantees that many more concurrent
// requests than idle sandboxes are all served (hits, then queued cold
// boots) as long as max_total allows.
func TestBurstIsServedWithoutDeadlock(t *testing.T) {
	b := &fakeBooter{delay: 5 * time.Millisecond}
	p := New("python", Config{TargetIdle: 2, MaxTotal: 20, MaxBooting: 1}, b.boot, &countSlots{max: 100}, quiet)
	defer p.Close()
	waitFor(t, "2 idle", func() bool { return p.Status().Idle == 2 })
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 16 {
		wg.Go(func() {
			if _, _, err := p.Acquire(context.Background(), false); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of 16 requests failed", failed.Load())
	}
	if st := p.Status(); st.InUse != 16 || st.Hits < 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestHostLimitIsResourceExhausted guarantees that a full host stops cold
// boots with ResourceExhausted.
func TestHostLimitIsResourceExhausted(t *testing.T) {
	b := &fakeBooter{}
	p := New("python", Config{TargetIdle: 0, MaxTotal: 10, MaxBooting: 1}, b.boot, &countSlots{max: 1}, quiet)
	defer p.Close()
	if _, _, err := p.Acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Acquire(context.Background(), false); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("acquire on a full host: %v", err)
	}
}

// TestDeadIdleSandboxIsReplaced guarantees that an idle sandbox that dies is
// dropped (never handed out) and replaced.
func TestDeadIdleSandboxIsReplaced(t *testing.T) {
	b := &fakeBooter{}
	p := New("python", Config{TargetIdle: 1, MaxTotal: 10, MaxBooting: 1}, b.boot, &countSlots{max: 10}, quiet)
	defer p.Close()
	waitFor(t, "1 idle", func() bool { return p.Status().Idle == 1 })
	b.mu.Lock()
	first := b.made[0]
	b.mu.Unlock()
	first.die()
	waitFor(t, "replacement", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.boots == 2 && p.Status().Idle == 1 })
	sb, cold, _ := p.Acquire(context.Background(), false)
	if sb == Sandbox(first) || cold {
		t.Fatal("the dead sandbox was handed out")
	}
	if p.Status().Failures != 1 {
		t.Fatalf("death not counted: %+v", p.Status())
	}
}

// TestFailingBootsBackOff guarantees that a template whose boots fail does
// not make the pool boot in a hot loop, and that failures are reported.
func TestFailingBootsBackOff(t *testing.T) {
	b := &fakeBooter{fail: true}
	slots := &countSlots{max: 10}
	p := New("python", Config{TargetIdle: 2, MaxTotal: 10, MaxBooting: 2}, b.boot, slots, quiet)
	defer p.Close()
	time.Sleep(300 * time.Millisecond)
	b.mu.Lock()
	boots := b.boots
	b.mu.Unlock()
	if boots == 0 || boots > 4 {
		t.Fatalf("%d boots in 300ms with failing boots, want 1-4", boots)
	}
	st := p.Status()
	if st.Failures == 0 || st.LastError != "boot failed" {
		t.Fatalf("status %+v", st)
	}
	if slots.inUse() != 0 {
		t.Fatalf("failed boots leaked %d host slots", slots.inUse())
	}
}

// TestResizeAndClose guarantees that shrinking destroys extra idle
// sandboxes, growing boots more, and Close destroys the idle ones and frees
// their slots.
func TestResizeAndClose(t *testing.T) {
	b := &fakeBooter{}
	slots := &countSlots{max: 100}
	p := New("python", Config{TargetIdle: 3, MaxTotal: 10, MaxBooting: 3}, b.boot, slots, quiet)
	waitFor(t, "3 idle", func() bool { return p.Status().Idle == 3 })
	p.Resize(Config{TargetIdle: 1, MaxTotal: 10, MaxBooting: 3})
	if p.Status().Idle != 1 || slots.inUse() != 1 {
		t.Fatalf("after shrink: %+v, slots %d", p.Status(), slots.inUse())
	}
	p.Resize(Config{TargetIdle: 4, MaxTotal: 10, MaxBooting: 3})
	waitFor(t, "4 idle", func() bool { return p.Status().Idle == 4 })
	p.Close()
	if slots.inUse() != 0 {
		t.Fatalf("slots used after close: %d", slots.inUse())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.made {
		if f.destroyed.Load() == 0 {
			t.Fatal("an idle sandbox survived Close")
		}
	}
}

// BenchmarkAcquireHit measures handing out an idle sandbox (the pool's hot
// path), refill excluded.
func BenchmarkAcquireHit(b *testing.B) {
	p := &Pool{template: "python", slots: &countSlots{max: 1 << 30}, log: quiet, cfg: Config{MaxTotal: 1 << 30},
		wake: make(chan struct{}, 1), changed: make(chan struct{})}
	idle := make([]Sandbox, b.N)
	for i := range idle {
		idle[i] = newFake()
	}
	p.idle = idle
	b.ResetTimer()
	for range b.N {
		if _, cold, err := p.Acquire(context.Background(), false); err != nil || cold {
			b.Fatal(cold, err)
		}
	}
}

// TestBootWithUsesItsBooterAndCountsAgainstMaxTotal guarantees that a
// sandbox booted with other limits comes from the given booter, never from
// the idle list, and takes a place under MaxTotal.
func TestBootWithUsesItsBooterAndCountsAgainstMaxTotal(t *testing.T) {
	pooled, custom := &fakeBooter{}, &fakeBooter{}
	p := New("python", Config{TargetIdle: 1, MaxTotal: 2, MaxBooting: 1}, pooled.boot, &countSlots{max: 100}, quiet)
	defer p.Close()
	waitFor(t, "1 idle", func() bool { return p.Status().Idle == 1 })
	sb, err := p.BootWith(context.Background(), custom.boot)
	if err != nil {
		t.Fatal(err)
	}
	custom.mu.Lock()
	fromCustom := len(custom.made) == 1 && Sandbox(custom.made[0]) == sb
	custom.mu.Unlock()
	if !fromCustom || p.Status().Idle != 1 {
		t.Fatalf("BootWith did not boot with its own booter (idle %d)", p.Status().Idle)
	}
	if _, err := p.BootWith(context.Background(), custom.boot); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("BootWith over max_total 2 (1 idle, 1 custom): %v", err)
	}
}
