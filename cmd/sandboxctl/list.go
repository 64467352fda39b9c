package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// listCommand is "sandboxctl list".
func listCommand() *command {
	cmd := newCommand("list", "", "list sandboxes", `
List prints the daemon's sandboxes, oldest first, as a table with the columns
ID, TEMPLATE, STATE, AGE, EXPIRES IN and LABELS; with --json, as a JSON array
of sandboxes. On a cluster (daemons with --node-address) it asks every node
and a NODE column comes last. --label keeps only the sandboxes carrying all the given labels.`, 0, 0)
	selector := keyValues{}
	cmd.flags.Var(selector, "label", "only sandboxes with label `KEY=VALUE` (repeatable; all must match)")
	asJSON := cmd.flags.Bool("json", false, "print a JSON array of sandboxes")

	cmd.run = func(ctx context.Context, c *cli, _ []string) error {
		client, err := c.client()
		if err != nil {
			return err
		}
		resp, err := client.ListSandboxes(ctx, &sandboxv1.ListSandboxesRequest{LabelSelector: selector})
		if err != nil {
			return err
		}
		sbs := resp.GetSandboxes()
		slices.SortStableFunc(sbs, func(a, b *sandboxv1.Sandbox) int {
			return cmp.Or(
				a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()),
				strings.Compare(a.GetSandboxId(), b.GetSandboxId()),
			)
		})
		if *asJSON {
			msgs := make([]proto.Message, len(sbs))
			for i, sb := range sbs {
				msgs[i] = sb
			}
			return writeJSON(c.stdout, true, msgs...)
		}
		now := time.Now()
		tw := newTable(c.stdout)
		nodes := slices.ContainsFunc(sbs, func(sb *sandboxv1.Sandbox) bool { return sb.GetNode() != "" })
		fmt.Fprint(tw, "ID\tTEMPLATE\tSTATE\tAGE\tEXPIRES IN\tLABELS")
		if nodes {
			fmt.Fprint(tw, "\tNODE")
		}
		fmt.Fprintln(tw)
		for _, sb := range sbs {
			age, expires := "-", "-"
			if sb.GetCreatedAt() != nil {
				age = humanDuration(now.Sub(sb.GetCreatedAt().AsTime()))
			}
			if sb.GetExpiresAt() != nil {
				expires = strings.TrimPrefix(expiresIn(now, sb.GetExpiresAt().AsTime()), "in ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s", sb.GetSandboxId(), cmp.Or(sb.GetTemplate(), "-"),
				stateName(sb.GetState()), age, expires, formatLabels(sb.GetLabels()))
			if nodes {
				fmt.Fprintf(tw, "\t%s", cmp.Or(sb.GetNode(), "-"))
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	}
	return cmd
}
