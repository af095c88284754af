// Package window is the time arithmetic of Abacus: resolutions and their
// retention, which windows an event lands in, and how a range query maps onto
// stored windows (alignment, step, dense points, the point limit, partial
// results).
//
// Windows of a resolution of size S are the intervals [k·S, (k+1)·S) in Unix
// seconds, so a 1d window is a UTC day. A window is retained while its end is
// later than now minus the resolution's retention; an event whose window is not
// retained skips that resolution (the all-time total still counts it).
//
// The package is pure: it never reads the clock (every function that needs
// the time takes now) and never does I/O. All values are safe to share.
package window
