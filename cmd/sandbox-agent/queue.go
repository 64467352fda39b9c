package main

// This file is the FIFO queue that serializes Python Execs on the one
// interpreter.

import (
	"context"
	"slices"
	"sync"
)

// turnstile lets one holder through at a time, in arrival order. A waiter
// whose context ends leaves the queue.
type turnstile struct {
	mu      sync.Mutex
	busy    bool
	waiters []chan struct{}
}

// acquire waits for the turn, or returns ctx's error.
func (t *turnstile) acquire(ctx context.Context) error {
	t.mu.Lock()
	if !t.busy {
		t.busy = true
		t.mu.Unlock()
		return nil
	}
	turn := make(chan struct{})
	t.waiters = append(t.waiters, turn)
	t.mu.Unlock()
	select {
	case <-turn:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		i := slices.Index(t.waiters, turn)
		if i >= 0 {
			t.waiters = slices.Delete(t.waiters, i, i+1)
		}
		t.mu.Unlock()
		if i < 0 { // the turn came as ctx ended: pass it on
			t.release()
		}
		return ctx.Err()
	}
}

// release hands the turn to the longest waiter, if any.
func (t *turnstile) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiters) == 0 {
		t.busy = false
		return
	}
	close(t.waiters[0])
	t.waiters = t.waiters[1:]
}
