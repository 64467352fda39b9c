package bench

import (
	"math"
	"slices"
)

// summary describes the latencies of the successful runs of one scenario or
// baseline, in milliseconds. The zero summary (N == 0) has no statistics.
type summary struct {
	N                             int
	Min, P50, P90, P99, Max, Mean float64
}

// summarize computes the summary of samples without modifying them.
// Percentiles use the nearest-rank method (see percentile).
func summarize(samples []float64) summary {
	if len(samples) == 0 {
		return summary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += v
	}
	return summary{
		N:    len(sorted),
		Min:  sorted[0],
		P50:  percentile(sorted, 50),
		P90:  percentile(sorted, 90),
		P99:  percentile(sorted, 99),
		Max:  sorted[len(sorted)-1],
		Mean: sum / float64(len(sorted)),
	}
}

// percentile returns the p-th percentile (0 <= p <= 100) of sorted, which
// must be sorted in increasing order and not empty, by the nearest-rank
// method: the smallest sample such that at least p percent of the samples
// are less than or equal to it, that is sorted[ceil(p/100*n)-1] (and the
// minimum for p = 0). Every percentile is thus an observed sample, never an
// interpolation, and with fewer than 100 samples p99 is the maximum.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	// The small epsilon keeps float error (0.9*10 = 9.000000000000002)
	// from pushing an exact rank one place up.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}

// ratio returns a/b, or NaN when either is unknown (not positive).
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return math.NaN()
	}
	return a / b
}

// cdf returns the points of the empirical cumulative distribution of
// samples: the samples in increasing order, each with the fraction of
// samples less than or equal to it.
func cdf(samples []float64) (xs, ys []float64) {
	xs = slices.Clone(samples)
	slices.Sort(xs)
	ys = make([]float64, len(xs))
	for i := range xs {
		ys[i] = float64(i+1) / float64(len(xs))
	}
	return xs, ys
}
