package bench

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	_ "gonum.org/v1/plot/vg/vgimg" // registers png
	_ "gonum.org/v1/plot/vg/vgsvg" // registers svg
)

// Layout of the --plot image.
const (
	// plotWidth and plotHeight: wide enough for latencies over several
	// decades, tall enough for a legend of a dozen rows.
	plotWidth  = 10 * vg.Inch
	plotHeight = 6 * vg.Inch
	// legendWidth is the strip right of the axes that holds the legend, so
	// that it never hides a curve.
	legendWidth = 1.8 * vg.Inch
	// plotMargin widens the x range by this factor on each side, so that
	// the first and last steps do not sit on the frame.
	plotMargin = 1.25
)

// writePlot draws the latency CDF of every row with a successful run to
// path; the extension (.png or .svg) picks the format. Scenarios are solid
// lines, baselines dashed; the x axis (ms) is logarithmic, as the rows
// span from a millisecond to seconds.
func writePlot(path string, rows []*series) error {
	p := plot.New()
	p.Title.Text = "sandboxd latency CDF"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "fraction of runs at most x"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	legend.TextStyle.Font.Size = vg.Points(10)

	drawn := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range rows {
		if len(s.Samples) == 0 {
			continue
		}
		line, err := plotter.NewLine(cdfSteps(s.Samples))
		if err != nil {
			return err
		}
		line.StepStyle = plotter.PostStep
		line.Width = vg.Points(1.5)
		line.Color = plotutil.Color(i)
		if s.Kind == kindBaseline {
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(line)
		legend.Add(s.Name, line)
		xmin, xmax, _, _ := plotter.XYRange(line)
		lo, hi = math.Min(lo, xmin), math.Max(hi, xmax)
		drawn++
	}
	if drawn == 0 {
		return errors.New("cannot draw --plot: no run succeeded")
	}
	p.X.Min, p.X.Max = lo/plotMargin, hi*plotMargin

	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	img, err := draw.NewFormattedCanvas(plotWidth, plotHeight, format)
	if err != nil {
		return err
	}
	c := draw.New(img)
	split := c.Max.X - legendWidth
	p.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{Min: c.Min, Max: vg.Point{X: split, Y: c.Max.Y}}})
	legendArea := vg.Rectangle{Min: vg.Point{X: split + vg.Points(10), Y: c.Min.Y}, Max: vg.Point{X: c.Max.X, Y: c.Max.Y - vg.Points(30)}}
	legend.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: legendArea})

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cdfSteps returns the points of the CDF of samples for a post-step line:
// a first point at height 0, then each sample at the fraction of samples up
// to it. Latencies are clamped to a microsecond, the log axis's floor.
func cdfSteps(samples []float64) plotter.XYs {
	xs, ys := cdf(samples)
	pts := make(plotter.XYs, 0, len(xs)+1)
	pts = append(pts, plotter.XY{X: math.Max(xs[0], 1e-3), Y: 0})
	for i := range xs {
		pts = append(pts, plotter.XY{X: math.Max(xs[i], 1e-3), Y: ys[i]})
	}
	return pts
}

// logTicks marks a log axis at 1, 2 and 5 times each power of ten, labelled,
// with unlabelled minor ticks at the other digits: gonum's LogTicks labels
// only powers of ten, too few when the data span one decade.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi < lo {
		return nil
	}
	var ticks []plot.Tick
	for exp := math.Floor(math.Log10(lo)); exp <= math.Ceil(math.Log10(hi)); exp++ {
		pow := math.Pow(10, exp)
		for d := 1; d <= 9; d++ {
			v := float64(d) * pow
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if d == 1 || d == 2 || d == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
