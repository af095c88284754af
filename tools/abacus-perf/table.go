package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row is one line of the table: one figure of one scenario, measured once
// per run.
type Row struct {
	Scenario string    `json:"scenario"`
	Key      string    `json:"key"` // what targets of other rows refer to
	What     string    `json:"what"`
	Unit     string    `json:"unit"`
	Values   []float64 `json:"values"`        // one per run
	P99      []float64 `json:"p99,omitempty"` // ms, one per run, where the figure has a latency
	Target   *Target   `json:"target,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// Target is what a row is held to: a bound on its median (or its median
// p99), either absolute or as a factor of another row's median (or p99).
type Target struct {
	AtMost bool    `json:"at_most"` // else at least
	Bound  float64 `json:"bound"`   // in the row's unit, or a factor when Ref is set
	OnP99  bool    `json:"on_p99,omitempty"`
	Ref    string  `json:"ref,omitempty"` // key of another row
	RefP99 bool    `json:"ref_p99,omitempty"`
	// Info rows show the ratio to Ref and pass no verdict.
	Info bool   `json:"info,omitempty"`
	Desc string `json:"desc"` // shown in the target column
}

func (r *Row) add(v float64) { r.Values = append(r.Values, v) }

func (r *Row) addWithP99(v, p99 float64) {
	r.Values = append(r.Values, v)
	r.P99 = append(r.P99, p99)
}

// median of xs: the middle value, or the mean of the two middle ones.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(xs), slices.Max(xs)
}

// verdict evaluates a row's target against the rows measured: the text of
// the last column, and whether the target was missed (false for info rows
// and targets that could not be evaluated).
func verdict(r *Row, rows map[string]*Row) (text string, missed bool) {
	t := r.Target
	if t == nil {
		return "", false
	}
	series := r.Values
	if t.OnP99 {
		series = r.P99
	}
	if len(series) == 0 {
		return "not measured", false
	}
	v := median(series)
	if t.Ref == "" {
		ok := v >= t.Bound
		if t.AtMost {
			ok = v <= t.Bound
		}
		if ok {
			return "met", false
		}
		return "NOT MET", true
	}
	ref := rows[t.Ref]
	var refSeries []float64
	if ref != nil {
		refSeries = ref.Values
		if t.RefP99 {
			refSeries = ref.P99
		}
	}
	if len(refSeries) == 0 || median(refSeries) == 0 {
		return fmt.Sprintf("n/a (%s not measured)", refName(t.Ref)), false
	}
	ratio := v / median(refSeries)
	text = fmt.Sprintf("%s×", fmtRatio(ratio))
	if t.Info {
		return text + " " + refName(t.Ref), false
	}
	ok := ratio >= t.Bound
	if t.AtMost {
		ok = ratio <= t.Bound
	}
	if ok {
		return text + " met", false
	}
	return text + " NOT MET", true
}

// refName shows a row key as a reader would name it: "redis-aof/c64" →
// "redis-aof c64".
func refName(key string) string { return strings.ReplaceAll(key, "/", " ") }

func fmtRatio(x float64) string {
	if x >= 10 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// fmtNum formats a figure for the table: thousands separators for large
// numbers, three significant digits for small ones.
func fmtNum(x float64) string {
	switch {
	case math.IsNaN(x):
		return "—"
	case math.Abs(x) >= 999.5: // what rounds to 1,000 or more
		return thousands(int64(math.Round(x)))
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case math.Abs(x) >= 1:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case x == 0:
		return "0"
	}
	return strconv.FormatFloat(x, 'f', 3, 64)
}

func thousands(n int64) string {
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// tableLines renders the rows as a Markdown table (aligned, so it reads as
// text too): scenario, what, median, min–max over runs, median p99, target,
// and the verdict or ratio. failed names the scenarios that failed, with why.
func tableLines(rows []*Row, failed map[string]string, order []string) []string {
	byKey := map[string]*Row{}
	for _, r := range rows {
		byKey[r.Key] = r
	}
	cells := [][]string{{"scenario", "what", "median", "min–max", "p99", "target", "met? / ratio"}}
	for _, sc := range order {
		for _, r := range rows {
			if r.Scenario != sc {
				continue
			}
			med, rng, p99 := "—", "—", ""
			if len(r.Values) > 0 {
				med = fmtNum(median(r.Values)) + " " + r.Unit
				if len(r.Values) > 1 {
					lo, hi := minMax(r.Values)
					rng = fmtNum(lo) + "–" + fmtNum(hi)
				} else {
					rng = "(1 run)"
				}
			}
			if len(r.P99) > 0 {
				p99 = fmtNum(median(r.P99)) + " ms"
			}
			target, v := "", ""
			if r.Target != nil {
				target = r.Target.Desc
				v, _ = verdict(r, byKey)
			}
			what := r.What
			if r.Note != "" {
				what += " (" + r.Note + ")"
			}
			cells = append(cells, []string{r.Scenario, what, med, rng, p99, target, v})
		}
		if why, ok := failed[sc]; ok {
			cells = append(cells, []string{sc, "FAILED: " + oneLine(why, 160), "", "", "", "", "FAILED"})
		}
	}
	width := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var lines []string
	for n, row := range cells {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range row {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + " |")
		}
		lines = append(lines, b.String())
		if n == 0 {
			b.Reset()
			b.WriteString("|")
			for i := range row {
				b.WriteString(" " + strings.Repeat("-", width[i]) + " |")
			}
			lines = append(lines, b.String())
		}
	}
	return lines
}

// missedTargets lists the rows whose target was not met.
func missedTargets(rows []*Row) []string {
	byKey := map[string]*Row{}
	for _, r := range rows {
		byKey[r.Key] = r
	}
	var out []string
	for _, r := range rows {
		if _, missed := verdict(r, byKey); missed {
			out = append(out, r.Scenario+": "+r.What)
		}
	}
	return out
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > n {
		r := []rune(s)
		s = string(r[:n]) + "…"
	}
	return s
}
