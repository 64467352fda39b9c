package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// getCommand is "sandboxctl get".
func getCommand() *command {
	cmd := newCommand("get", "ID", "describe one sandbox", `
Get prints one sandbox: its template, state (and why, when it is not
RUNNING), when it was created, how it started (pool, restore or boot), when the daemon destroys it at the latest,
its labels, its egress allowlist when it has one (see "sandboxctl egress"),
the limits it runs with (its template's, lowered by create's limit flags)
and, while it runs, its usage: the CPU time it has used since
it booted and the memory it uses now, as its host cgroup counts them. With
--json it prints the sandbox as JSON.`, 1, 1)
	asJSON := cmd.flags.Bool("json", false, "print the sandbox as JSON")

	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		sb, err := client.GetSandbox(ctx, &sandboxv1.GetSandboxRequest{SandboxId: args[0]})
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(c.stdout, false, sb)
		}
		now := time.Now()
		var buf bytes.Buffer
		tw := newTable(&buf)
		fmt.Fprintf(tw, "ID:\t%s\n", sb.GetSandboxId())
		fmt.Fprintf(tw, "Template:\t%s\n", sb.GetTemplate())
		fmt.Fprintf(tw, "State:\t%s\n", stateName(sb.GetState()))
		if r := sb.GetStateReason(); r != "" {
			fmt.Fprintf(tw, "Reason:\t%s\n", r)
		}
		if sb.GetCreatedAt() != nil {
			t := sb.GetCreatedAt().AsTime()
			fmt.Fprintf(tw, "Created:\t%s (%s ago)\n", t.Local().Format(time.RFC3339), humanDuration(now.Sub(t)))
		}
		if sb.GetExpiresAt() != nil {
			t := sb.GetExpiresAt().AsTime()
			fmt.Fprintf(tw, "Expires:\t%s (%s)\n", t.Local().Format(time.RFC3339), expiresIn(now, t))
		}
		if sb.GetPausedAt() != nil {
			t := sb.GetPausedAt().AsTime()
			fmt.Fprintf(tw, "Paused:\t%s (%s ago)\n", t.Local().Format(time.RFC3339), humanDuration(now.Sub(t)))
		}
		if st := sb.GetStart(); st != sandboxv1.StartKind_START_KIND_UNSPECIFIED {
			fmt.Fprintf(tw, "Start:\t%s\n", strings.ToLower(strings.TrimPrefix(st.String(), "START_KIND_")))
		}
		fmt.Fprintf(tw, "Labels:\t%s\n", formatLabels(sb.GetLabels()))
		if allow := sb.GetEgressAllow(); len(allow) > 0 {
			fmt.Fprintf(tw, "Egress:\t%s\n", strings.Join(allow, ", "))
		}
		if sb.GetLimits() != nil {
			writeLimits(tw, sb.GetLimits())
		}
		if sb.GetUsage() != nil {
			writeUsage(tw, sb.GetUsage())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		// Section headings (Limits:) are padded like any first cell.
		_, err = io.WriteString(c.stdout, trailingSpaces.ReplaceAllString(buf.String(), ""))
		return err
	}
	return cmd
}

// trailingSpaces matches the spaces that end a line.
var trailingSpaces = regexp.MustCompile(`(?m) +$`)

// stateName is the state without its enum prefix: RUNNING, DEAD.
func stateName(s sandboxv1.SandboxState) string {
	return strings.TrimPrefix(s.String(), "SANDBOX_STATE_")
}

// expiresIn says how long until t: "in 5m0s", or "expired".
func expiresIn(now, t time.Time) string {
	if !t.After(now) {
		return "expired"
	}
	return "in " + humanDuration(t.Sub(now))
}

// formatLabels renders labels sorted by key as k=v,k2=v2, or "-" for none.
func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	return keyValues(labels).String()
}
