package promapi

import (
	"encoding/json"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// Query answers are encoded by hand: encoding/json spends most of a large
// answer's time in FPoint.MarshalJSON and in re-compacting its output
// (Prometheus uses its own jsoniter codec for the same reason). The format
// is Prometheus's: a point is [unix seconds, "value"].

// appendQueryData appends {"resultType":…,"result":…} for v.
func appendQueryData(b []byte, v parser.Value) ([]byte, error) {
	b = append(b, `{"resultType":"`...)
	b = append(b, v.Type()...)
	b = append(b, `","result":`...)
	var err error
	switch x := v.(type) {
	case promql.Matrix:
		if b, err = appendMatrix(b, x); err != nil {
			return nil, err
		}
	case promql.Vector:
		b = append(b, '[')
		for i, s := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if s.H != nil {
				var j []byte
				if j, err = json.Marshal(s); err != nil {
					return nil, err
				}
				b = append(b, j...)
				continue
			}
			if b, err = appendMetric(b, s.Metric); err != nil {
				return nil, err
			}
			b = append(b, `,"value":`...)
			b = appendPoint(b, s.T, s.F)
			b = append(b, '}')
		}
		b = append(b, ']')
	default:
		var j []byte
		if j, err = json.Marshal(v); err != nil {
			return nil, err
		}
		b = append(b, j...)
	}
	return append(b, '}'), nil
}

// appendMatrix encodes a large matrix in parts, one per core: a sum by
// (counter) over a thousand counters is hundreds of thousands of points.
func appendMatrix(b []byte, m promql.Matrix) ([]byte, error) {
	parts := min(runtime.GOMAXPROCS(0), maxReaders, len(m)/64+1)
	bufs := make([][]byte, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Go(func() {
			lo, hi := p*len(m)/parts, (p+1)*len(m)/parts
			// Size the buffer once: about 40 bytes a point, 100 a series.
			size := 0
			for i := lo; i < hi; i++ {
				size += 100 + 40*len(m[i].Floats)
			}
			var buf []byte
			if p == 0 {
				buf = append(slices.Grow(b, size), '[')
			} else {
				buf = slices.Grow(getBuf(), size)
			}
			for i := lo; i < hi; i++ {
				if i > 0 {
					buf = append(buf, ',')
				}
				if buf, errs[p] = appendSeries(buf, m[i]); errs[p] != nil {
					return
				}
			}
			bufs[p] = buf
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	b = bufs[0]
	for _, buf := range bufs[1:] {
		b = append(b, buf...)
		putBuf(buf)
	}
	return append(b, ']'), nil
}

// Encoding buffers are reused: a large answer is megabytes, and a dashboard
// asks for it again every refresh.
var bufPool sync.Pool

// maxPooled is the largest buffer kept for reuse.
const maxPooled = 64 << 20

func getBuf() []byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putBuf(b []byte) {
	if cap(b) > 0 && cap(b) <= maxPooled {
		bufPool.Put(&b)
	}
}

// appendMetric appends {"metric":… of a sample or a series.
func appendMetric(b []byte, metric labels.Labels) ([]byte, error) {
	m, err := json.Marshal(metric)
	if err != nil {
		return nil, err
	}
	b = append(b, `{"metric":`...)
	return append(b, m...), nil
}

func appendSeries(b []byte, s promql.Series) ([]byte, error) {
	if len(s.Histograms) > 0 {
		j, err := json.Marshal(s)
		return append(b, j...), err
	}
	b, err := appendMetric(b, s.Metric)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"values":[`...)
	for i, p := range s.Floats {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPoint(b, p.T, p.F)
	}
	return append(b, "]}"...), nil
}

// appendPoint appends [t/1000, "f"], as FPoint.MarshalJSON does.
func appendPoint(b []byte, t int64, f float64) []byte {
	b = append(b, '[')
	if t%1000 == 0 {
		b = strconv.AppendInt(b, t/1000, 10)
	} else {
		b = strconv.AppendFloat(b, float64(t)/1000, 'f', -1, 64)
	}
	b = append(b, `,"`...)
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		b = strconv.AppendInt(b, int64(f), 10)
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	return append(b, `"]`...)
}
