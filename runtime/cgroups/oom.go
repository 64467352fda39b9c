package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// deletedPollInterval is how often an OOMEvents watcher checks that its
// group still exists. Removing a v2 cgroup wakes no inotify watch on its
// files, so this bounds how long a channel stays open after its group is
// deleted (on v1 the kernel signals the eventfd at removal).
const deletedPollInterval = 500 * time.Millisecond

// oomSettleV1 is how long a v1 watcher waits, after the eventfd fires,
// for the kill to show in memory.oom_control: the kernel signals the
// eventfd before the OOM killer picks and counts its victim (about 6 ms
// later on Linux 6.18). An OOM that kills nothing (its victim was already
// exiting) ends the wait.
const oomSettleV1 = 100 * time.Millisecond

// oomSettlePollInterval is how often a v1 watcher re-reads the kill count
// while it waits.
const oomSettlePollInterval = 2 * time.Millisecond

// OOMEvents returns a channel that receives once for each OOM kill in the
// group from now on. It is closed when ctx ends or the group is deleted
// (on v2 up to deletedPollInterval later). The watcher's goroutine blocks
// until each event is received or ctx ends, so callers either drain the
// channel or cancel ctx. Kills from before the call are reported by
// OOMKilled.
func (g *Group) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	var (
		waker  *os.File
		settle time.Duration
		err    error
	)
	if g.m.v2 {
		waker, err = g.oomWakerV2()
	} else {
		waker, err = g.oomWakerV1()
		settle = oomSettleV1
	}
	if err != nil {
		return nil, fmt.Errorf("watching OOM kills of %s: %w", g.path, err)
	}
	// Read the count after the waker exists, so no kill falls between.
	last, err := g.oomKills()
	if err != nil {
		waker.Close()
		return nil, fmt.Errorf("watching OOM kills of %s: %w", g.path, err)
	}
	ch := make(chan struct{})
	go watchOOM(ctx, ch, waker, g.oomKills, last, settle)
	return ch, nil
}

// oomKills returns the group's OOM kill count.
func (g *Group) oomKills() (uint64, error) {
	var r fileReader
	if g.m.v2 {
		return r.key(filepath.Join(g.dir(""), "memory.events"), "oom_kill"), r.err
	}
	return r.key(filepath.Join(g.dir("memory"), "memory.oom_control"), "oom_kill"), r.err
}

// watchOOM sends one value on ch for each increase of count beyond last,
// re-reading count whenever waker is readable (or deletedPollInterval
// passed), and waiting up to settle after a wake for the count to move.
// It closes ch and waker when ctx ends or count fails (the group is gone).
func watchOOM(ctx context.Context, ch chan<- struct{}, waker *os.File, count func() (uint64, error), last uint64, settle time.Duration) {
	defer close(ch)
	defer waker.Close()
	// Closing the file interrupts a blocked Read.
	stop := context.AfterFunc(ctx, func() { waker.Close() })
	defer stop()
	buf := make([]byte, 4096) // an eventfd counter or inotify events
	for {
		if err := waker.SetReadDeadline(time.Now().Add(deletedPollInterval)); err != nil {
			return
		}
		_, err := waker.Read(buf)
		woke := err == nil
		if !woke && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		n, err := count()
		for end := time.Now().Add(settle); woke && err == nil && n <= last && time.Now().Before(end); {
			time.Sleep(oomSettlePollInterval)
			n, err = count()
		}
		if err != nil {
			return
		}
		for ; last < n; last++ {
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}
}
