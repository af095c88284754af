package window

import "errors"

var (
	// ErrInvalidConfig means a resolution list is not usable.
	ErrInvalidConfig = errors.New("window: invalid resolution configuration")
	// ErrFuture means an event time is more than MaxFuture ahead of now.
	ErrFuture = errors.New("window: event time is too far in the future")
	// ErrBadTime means a time could not be parsed.
	ErrBadTime = errors.New("window: invalid time")
	// ErrBadDuration means a duration could not be parsed.
	ErrBadDuration = errors.New("window: invalid duration")
	// ErrEmptyRange means a range query's from is not before its to.
	ErrEmptyRange = errors.New("window: from must be before to")
	// ErrBadStep means a step is not positive.
	ErrBadStep = errors.New("window: step must be positive")
	// ErrStepNotMultiple means no resolution divides the step.
	ErrStepNotMultiple = errors.New("window: step is not a whole multiple of any resolution")
	// ErrTooManyPoints means a range query would return more than MaxPoints points.
	ErrTooManyPoints = errors.New("window: range has too many points")
)
