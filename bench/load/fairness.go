package load

import (
	"math"
	"sort"
)

// Fairness summarises how evenly sessions were served: their rates' spread and Jain's
// fairness index, (sum x)^2 / (n * sum x^2), which is 1 when every session got the same and
// 1/n when one got everything.
type Fairness struct {
	Sessions int     `json:"sessions"`
	Min      float64 `json:"min"`
	Median   float64 `json:"median"`
	Max      float64 `json:"max"`
	Mean     float64 `json:"mean"`
	Jain     float64 `json:"jain"`
}

// FairnessOf computes the summary of rates (any unit). ok is false with no rates or only
// zeros: there is nothing to be fair about, and a report says n/a. (No NaN here: results
// are JSON, which has none.)
func FairnessOf(rates []float64) (f Fairness, ok bool) {
	if len(rates) == 0 {
		return f, false
	}
	s := append([]float64(nil), rates...)
	sort.Float64s(s)
	var sum, sq float64
	for _, x := range s {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return f, false
		}
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return f, false
	}
	n := len(s)
	f = Fairness{Sessions: n, Min: s[0], Max: s[n-1], Mean: sum / float64(n), Jain: sum * sum / (float64(n) * sq)}
	if n%2 == 1 {
		f.Median = s[n/2]
	} else {
		f.Median = (s[n/2-1] + s[n/2]) / 2
	}
	return f, true
}
