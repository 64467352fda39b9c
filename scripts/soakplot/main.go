// Command soakplot draws the samples of a churn soak (the CSV that
// TestSoakChurn writes to SANDBOXD_SOAK_CSV) as three panels over time:
// the daemon's RSS, its open file descriptors and its goroutines. A leak
// shows as a rising line; BENCHMARKS.md carries the plot of a 30-minute run.
//
//	SANDBOXD_SOAK_CSV=/tmp/soak.csv make soak
//	go run ./scripts/soakplot /tmp/soak.csv soak.png
package main

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Size of the image: three panels stacked, each wide enough to read a
// slope over 30 minutes.
const (
	width       = 9 * vg.Inch
	panelHeight = 2.4 * vg.Inch
)

// panel is one metric of the CSV: its column, title, unit and scale.
type panel struct {
	column string
	title  string
	scale  float64
}

var panels = []panel{
	{"rss_bytes", "daemon RSS (MiB)", 1.0 / (1 << 20)},
	{"fds", "daemon open file descriptors", 1},
	{"goroutines", "daemon goroutines", 1},
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: soakplot SAMPLES.csv OUT.png")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "soakplot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return fmt.Errorf("reading %s: %w", in, err)
	}
	if len(rows) < 2 {
		return fmt.Errorf("%s has no samples", in)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	if _, ok := col["seconds"]; !ok {
		return fmt.Errorf("%s has no seconds column", in)
	}
	img := vgimg.New(width, panelHeight*vg.Length(len(panels)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	for i, pn := range panels {
		c, ok := col[pn.column]
		if !ok {
			return fmt.Errorf("%s has no %s column", in, pn.column)
		}
		pts := make(plotter.XYs, 0, len(rows)-1)
		for _, r := range rows[1:] {
			x, err1 := strconv.ParseFloat(r[col["seconds"]], 64)
			y, err2 := strconv.ParseFloat(r[c], 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("%s: bad row %v", in, r)
			}
			pts = append(pts, plotter.XY{X: x / 60, Y: y * pn.scale})
		}
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "minutes"
		p.Y.Min = 0
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		points.Radius = vg.Points(2)
		p.Add(plotter.NewGrid(), line, points)
		p.Draw(tiles.At(dc, 0, i))
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
