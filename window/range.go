package window

import (
	"fmt"
	"time"
)

// Query is a range query as a client asked it. Zero fields take defaults: To
// is now, From is To minus one hour, Step is the size of the finest resolution
// still retained at From.
type Query struct {
	From, To time.Time
	Step     time.Duration
}

// Plan is how a Query is answered: Points points of Step each, starting at
// From (a multiple of Step since the Unix epoch), summed from windows of
// Resolution.
type Plan struct {
	Resolution Resolution
	From, To   time.Time // To = From + Points·Step
	Step       time.Duration
	Points     int
	// Partial is true when some of the range is older than the resolution's
	// retention, so those points read zero for lack of data, not of events.
	Partial bool
}

// Plan resolves q against c at now.
//
// With a step, the resolution is the coarsest one that divides the step: it
// holds every event any finer one holds (retention never shrinks with size) and
// takes the fewest windows to read. Without one, the step is the size of the
// finest resolution retained at From, or of the coarsest if none is.
func (c Config) Plan(q Query, now time.Time) (Plan, error) {
	to := q.To
	if to.IsZero() {
		to = now
	}
	from := q.From
	if from.IsZero() {
		from = to.Add(-time.Hour)
	}
	if !from.Before(to) {
		return Plan{}, ErrEmptyRange
	}
	var res Resolution
	switch {
	case q.Step < 0:
		return Plan{}, ErrBadStep
	case q.Step == 0:
		res = c.Resolutions[len(c.Resolutions)-1]
		for _, r := range c.Resolutions {
			if r.Retained(r.Start(from), now) {
				res = r
				break
			}
		}
	default:
		found := false
		for _, r := range c.Resolutions {
			if q.Step%r.Size == 0 {
				res, found = r, true
			}
		}
		if !found {
			return Plan{}, fmt.Errorf("%w: %v", ErrStepNotMultiple, q.Step)
		}
	}
	step := q.Step
	if step == 0 {
		step = res.Size
	}
	stepSec := int64(step / time.Second)
	first := floorDiv(from.Unix(), stepSec)
	last := floorDiv(to.Unix(), stepSec)
	if to.Unix()%stepSec != 0 || to.Nanosecond() != 0 {
		last++ // a partly covered last step still gets a point
	}
	points := last - first
	if points > MaxPoints {
		return Plan{}, fmt.Errorf("%w: %d points, at most %d", ErrTooManyPoints, points, MaxPoints)
	}
	p := Plan{
		Resolution: res,
		From:       time.Unix(first*stepSec, 0).UTC(),
		To:         time.Unix(last*stepSec, 0).UTC(),
		Step:       step,
		Points:     int(points),
	}
	p.Partial = !res.Retained(p.From.Unix(), now)
	return p, nil
}

// PointOf returns the index of the point that the window starting at start
// (Unix seconds) falls in, and whether it falls in the plan at all.
func (p Plan) PointOf(start int64) (int, bool) {
	if start < p.From.Unix() || start >= p.To.Unix() {
		return 0, false
	}
	return int((start - p.From.Unix()) / int64(p.Step/time.Second)), true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
