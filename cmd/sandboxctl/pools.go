package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// poolsCommand is "sandboxctl pools".
func poolsCommand() *command {
	cmd := newCommand("pools", "", "show the warm pools", `
Pools prints one row per warm pool of the policy in force: TEMPLATE, IDLE
(ready to hand out), IN USE, BOOTING, TARGET (idle kept ready), MAX (total
for the template), HITS and MISSES (CreateSandbox calls served from the pool
or booted for the request), FAILURES (failed boots, idle sandboxes that died)
and LAST ERROR; on a cluster (daemons with --node-address) a NODE column
first, one row per pool and node; with --json, a JSON array of pools.`, 0, 0)
	asJSON := cmd.flags.Bool("json", false, "print a JSON array of pools")

	cmd.run = func(ctx context.Context, c *cli, _ []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		resp, err := client.ListPools(ctx, &sandboxv1.ListPoolsRequest{})
		if err != nil {
			return err
		}
		if *asJSON {
			msgs := make([]proto.Message, len(resp.GetPools()))
			for i, p := range resp.GetPools() {
				msgs[i] = p
			}
			return writeJSON(c.stdout, true, msgs...)
		}
		tw := newTable(c.stdout)
		nodes := slices.ContainsFunc(resp.GetPools(), func(p *sandboxv1.Pool) bool { return p.GetNode() != "" })
		if nodes {
			fmt.Fprint(tw, "NODE\t")
		}
		fmt.Fprintln(tw, "TEMPLATE\tIDLE\tIN USE\tBOOTING\tTARGET\tMAX\tHITS\tMISSES\tFAILURES\tSNAPSHOT\tLAST ERROR")
		for _, p := range resp.GetPools() {
			lastErr := p.GetLastError()
			if e := p.GetSnapshot().GetLastError(); lastErr == "" && e != "" {
				lastErr = "snapshot: " + e
			}
			if lastErr == "" {
				lastErr = "-"
			}
			if nodes {
				fmt.Fprintf(tw, "%s\t", cmp.Or(p.GetNode(), "-"))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.GetTemplate(), p.GetIdle(), p.GetInUse(),
				p.GetBooting(), p.GetTargetIdle(), p.GetMaxTotal(), p.GetHits(), p.GetMisses(), p.GetFailures(),
				snapshotSummary(p.GetSnapshot()), lineBreaks.Replace(lastErr))
		}
		return tw.Flush()
	}
	return cmd
}

// snapshotSummary is a pool's snapshot in a table cell: its state, and the
// image's size when ready ("ready 63MiB").
func snapshotSummary(s *sandboxv1.Snapshot) string {
	state := strings.ToLower(strings.TrimPrefix(s.GetState().String(), "SNAPSHOT_STATE_"))
	if s.GetState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_UNSPECIFIED {
		return "-"
	}
	if s.GetState() == sandboxv1.SnapshotState_SNAPSHOT_STATE_READY {
		return fmt.Sprintf("%s %dMiB", state, (s.GetImageBytes()+1<<20-1)>>20)
	}
	return state
}
