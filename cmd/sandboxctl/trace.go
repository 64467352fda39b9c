package main

import (
	"fmt"
	"io"
	"time"

	sandboxv1 "github.com/sandboxd/sandboxd/proto/sandbox/v1"
)

// writeTrace prints the stages of an exec as a table: first the client's
// share (what the client waited for minus what the daemon accounted for:
// connection, request and stream over the socket), then the daemon's
// stages, then the total the client saw. Times in milliseconds.
func writeTrace(w io.Writer, total time.Duration, stages []*sandboxv1.ExecStage) error {
	if len(stages) == 0 {
		_, err := fmt.Fprintf(w, "trace: the daemon sent no stages (an older daemon?); total %s ms\n", ms(total))
		return err
	}
	var inDaemon time.Duration
	for _, st := range stages {
		inDaemon += st.GetDuration().AsDuration()
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "STAGE\tMS")
	fmt.Fprintf(tw, "client <-> daemon: connect, request, stream\t%s\n", ms(max(total-inDaemon, 0)))
	for _, st := range stages {
		fmt.Fprintf(tw, "%s\t%s\n", lineBreaks.Replace(st.GetName()), ms(st.GetDuration().AsDuration()))
	}
	fmt.Fprintf(tw, "total (client)\t%s\n", ms(total))
	return tw.Flush()
}

// ms formats d in milliseconds with microsecond precision.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
