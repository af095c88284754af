package promapi

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestAppendQueryData_AsEncodingJSON: the hand encoder writes what
// Prometheus's own MarshalJSON methods write, for the values where a
// shortcut could differ (integers past 2^53, fractions, infinities, NaN,
// timestamps off the second and before 1970) and for enough series that
// the matrix is encoded in parts.
func TestAppendQueryData_AsEncodingJSON(t *testing.T) {
	values := []float64{0, 1, 7, -3, 0.1, 2.5e-7, 1 << 53, 1<<53 + 2, 1e21, math.MaxFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	times := []int64{0, 1000, 1500, 1001, 1_795_428_000_000, 1_795_428_000_123, -1000, -1500}
	var m promql.Matrix
	var vec promql.Vector
	for i := range 300 {
		s := promql.Series{Metric: labels.FromStrings(labels.MetricName, MetricName, LabelCount, "c\"\\é", LabelDC, string(rune('a'+i%26)))}
		for j, ts := range times {
			s.Floats = append(s.Floats, promql.FPoint{T: ts + int64(i), F: values[(i+j)%len(values)]})
		}
		m = append(m, s)
		vec = append(vec, promql.Sample{Metric: s.Metric, T: times[i%len(times)], F: values[i%len(values)]})
	}
	for _, v := range []parser.Value{m, vec, promql.Scalar{T: 1500, V: 0.25}} {
		got, err := appendQueryData(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(queryData{ResultType: v.Type(), Result: v})
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: not JSON: %v\n%.300s", v.Type(), err, got)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: got\n%.600s\nwant\n%.600s", v.Type(), got, want)
		}
	}
}
