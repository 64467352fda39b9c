package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// BenchmarkCreateToFirstExec measures, end to end from a client, the time
// from CreateSandbox to the output of a first Exec `print(1)`: for a pool
// hit and for a cold start (bypass_pool). Destroy and the pool's refill are
// not timed. Run it with a fixed count to get stable percentiles:
//
//	make bench    (go test -run '^$' -bench CreateToFirstExec -benchtime 50x ./cmd/sandboxd/e2e/)
func BenchmarkCreateToFirstExec(b *testing.B) {
	d := startDaemon(b, daemonOpts{policy: copyPolicy(b, "pool.yaml")})
	for _, c := range []struct {
		name   string
		bypass bool
	}{{"hit", false}, {"cold", true}} {
		b.Run(c.name, func(b *testing.B) {
			var samples []time.Duration
			for b.Loop() {
				b.StopTimer()
				if !c.bypass {
					d.waitPool(b, "python", "an idle sandbox", func(p *sandboxv1.Pool) bool { return p.Idle >= 1 })
				}
				b.StartTimer()
				start := time.Now()
				sb, err := d.client.CreateSandbox(context.Background(), &sandboxv1.CreateSandboxRequest{BypassPool: c.bypass})
				if err != nil {
					b.Fatal(err)
				}
				r, err := d.tryRun(context.Background(), sb.SandboxId, &sandboxv1.ExecRequest{Language: sandboxv1.Language_LANGUAGE_PYTHON, Code: "print(1)"})
				took := time.Since(start)
				b.StopTimer()
				if err != nil || r.stdout != "1\n" || sb.ColdStart != c.bypass {
					b.Fatalf("run: %v stdout %q cold_start %v", err, r.stdout, sb.ColdStart)
				}
				samples = append(samples, took)
				d.client.DestroySandbox(context.Background(), &sandboxv1.DestroySandboxRequest{SandboxId: sb.SandboxId})
				b.StartTimer()
			}
			reportPercentiles(b, samples)
		})
	}
}

// trivialExecs are the Execs whose cost is all overhead: one per language.
var trivialExecs = []struct {
	name string
	lang sandboxv1.Language
	code string
}{{"python", sandboxv1.Language_LANGUAGE_PYTHON, "pass"}, {"bash", sandboxv1.Language_LANGUAGE_BASH, "true"}}

// BenchmarkExecRoundTrip measures a trivial Python and bash Exec in a live
// sandbox, client to client.
func BenchmarkExecRoundTrip(b *testing.B) {
	d := startDaemon(b, daemonOpts{policy: copyPolicy(b, "pool.yaml")})
	id := d.create(b)
	for _, c := range trivialExecs {
		b.Run(c.name, func(b *testing.B) {
			var samples []time.Duration
			for b.Loop() {
				start := time.Now()
				r, err := d.tryRun(context.Background(), id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code})
				if err != nil || r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OK {
					b.Fatalf("%v %v", err, r.result)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}

// reportPercentiles adds p50, p95 and p99 in milliseconds (nearest rank) to
// the benchmark's output.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50-ms", 0.50}, {"p95-ms", 0.95}, {"p99-ms", 0.99}} {
		i := int(p.q*float64(len(samples))+0.999999) - 1
		i = max(0, min(i, len(samples)-1))
		b.ReportMetric(float64(samples[i].Microseconds())/1000, p.name)
	}
}

// BenchmarkExecStages measures where a trivial Exec's time goes, stage by
// stage (ExecRequest.trace): the mean of each stage over the runs, in
// microseconds, one metric per stage, so a regression shows in the stage
// that caused it.
func BenchmarkExecStages(b *testing.B) {
	d := startDaemon(b, daemonOpts{policy: copyPolicy(b, "pool.yaml")})
	id := d.create(b)
	for _, c := range trivialExecs {
		b.Run(c.name, func(b *testing.B) {
			sums := map[string]time.Duration{}
			var order []string
			n := 0
			for b.Loop() {
				r, err := d.tryRun(context.Background(), id, &sandboxv1.ExecRequest{Language: c.lang, Code: c.code, Trace: true})
				if err != nil || r.result.Status != sandboxv1.ExecStatus_EXEC_STATUS_OK || len(r.result.Trace) == 0 {
					b.Fatalf("%v %v", err, r.result)
				}
				for _, st := range r.result.Trace {
					if _, seen := sums[st.Name]; !seen {
						order = append(order, st.Name)
					}
					sums[st.Name] += st.Duration.AsDuration()
				}
				n++
			}
			for _, name := range order {
				b.ReportMetric(float64(sums[name].Microseconds())/float64(n), "us/"+metricName(name))
			}
		})
	}
}

// metricName turns a stage name into a benchmark metric unit: no spaces.
func metricName(stage string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return '_'
		}
		return r
	}, stage)
}
