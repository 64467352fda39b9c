package manager

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestLockWithin guarantees that a pause waits for a call that ends within
// its wait, refuses one that does not, does not stall new calls while it
// waits, and gives up when its context ends.
func TestLockWithin(t *testing.T) {
	var mu sync.RWMutex
	if !lockWithin(context.Background(), &mu, 0) {
		t.Fatal("a free lock was not taken")
	}
	mu.Unlock()

	mu.RLock()
	go func() { time.Sleep(30 * time.Millisecond); mu.RUnlock() }()
	if !lockWithin(context.Background(), &mu, time.Second) {
		t.Fatal("a call ending within the wait was not waited for")
	}
	mu.Unlock()

	mu.RLock()
	done := make(chan bool)
	go func() { done <- lockWithin(context.Background(), &mu, 50*time.Millisecond) }()
	time.Sleep(10 * time.Millisecond)
	if !mu.TryRLock() {
		t.Fatal("a new call was stalled by the waiting pause")
	}
	mu.RUnlock()
	if <-done {
		t.Fatal("a busy lock was taken")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if lockWithin(ctx, &mu, time.Minute) {
		t.Fatal("a busy lock was taken after the context ended")
	}
	mu.RUnlock()
}
