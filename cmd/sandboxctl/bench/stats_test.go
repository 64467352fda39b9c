package bench

import (
	"math"
	"slices"
	"testing"
)

// TestPercentileNearestRank guarantees the documented nearest-rank method:
// the p-th percentile is sorted[ceil(p/100*n)-1], always an observed
// sample, p0 the minimum, p100 the maximum, and p99 of fewer than 100
// samples the maximum.
func TestPercentileNearestRank(t *testing.T) {
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"one sample p50", []float64{7}, 50, 7},
		{"one sample p99", []float64{7}, 99, 7},
		{"two samples p50 is the lower", []float64{1, 2}, 50, 1},
		{"two samples p51", []float64{1, 2}, 51, 2},
		{"ten p0", ten, 0, 1},
		{"ten p10", ten, 10, 1},
		{"ten p11", ten, 11, 2},
		{"ten p50", ten, 50, 5},
		{"ten p90 exact rank despite float error", ten, 90, 9},
		{"ten p99 is the max", ten, 99, 10},
		{"ten p100", ten, 100, 10},
		{"hundred p99", hundred, 99, 99},
		{"hundred p90", hundred, 90, 90},
		{"hundred p50", hundred, 50, 50},
		{"three p50", []float64{10, 20, 30}, 50, 20},
		{"three p90", []float64{10, 20, 30}, 90, 30},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v, %v) = %v, want %v", tc.name, tc.sorted, tc.p, got, tc.want)
		}
	}
}

// TestSummarize guarantees the summary's statistics on unsorted input, that
// the input is left in its order, and that no samples give the zero
// summary.
func TestSummarize(t *testing.T) {
	in := []float64{30, 10, 20, 40}
	orig := slices.Clone(in)
	got := summarize(in)
	want := summary{N: 4, Min: 10, P50: 20, P90: 40, P99: 40, Max: 40, Mean: 25}
	if got != want {
		t.Errorf("summarize(%v) = %+v, want %+v", orig, got, want)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("summarize reordered its input: %v", in)
	}
	if got := summarize(nil); got != (summary{}) {
		t.Errorf("summarize(nil) = %+v, want the zero summary", got)
	}
}

// TestRatio guarantees that a ratio is a/b, and NaN when either side is
// unknown (zero or negative), never Inf.
func TestRatio(t *testing.T) {
	for _, tc := range []struct{ a, b, want float64 }{
		{10, 5, 2}, {5, 10, 0.5}, {0, 5, math.NaN()}, {5, 0, math.NaN()}, {-1, 5, math.NaN()},
	} {
		got := ratio(tc.a, tc.b)
		if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("ratio(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestCDF guarantees the empirical CDF: samples sorted, each with the
// fraction of samples up to it, ending at 1; the input untouched.
func TestCDF(t *testing.T) {
	in := []float64{3, 1, 2, 2}
	xs, ys := cdf(in)
	if !slices.Equal(xs, []float64{1, 2, 2, 3}) || !slices.Equal(ys, []float64{0.25, 0.5, 0.75, 1}) {
		t.Errorf("cdf(%v) = %v, %v", in, xs, ys)
	}
	if !slices.Equal(in, []float64{3, 1, 2, 2}) {
		t.Errorf("cdf reordered its input: %v", in)
	}
}
