package store

import (
	"errors"

	"github.com/abacus-counter/abacus/crdt"
)

var (
	// ErrClosed means the store is shutting down or closed.
	ErrClosed = errors.New("store: closed")
	// ErrOverflow means an increment would overflow a counter entry; the whole
	// request was refused and nothing changed.
	ErrOverflow = crdt.ErrOverflow
	// ErrIdempotencyMismatch means an idempotency key was reused with a
	// different request.
	ErrIdempotencyMismatch = errors.New("store: idempotency key reused with a different request")
	// ErrInUse means another process holds the data directory.
	ErrInUse = errors.New("store: data directory is in use by another process")
	// ErrIncompatible means the data directory was written with a different
	// schema or window configuration, its files belong to different replicas,
	// or its journal holds records of a newer build.
	ErrIncompatible = errors.New("store: data directory is incompatible")
	// ErrInvalid means a request was malformed (a bad name, a zero amount, an
	// empty batch). The HTTP layer validates first; this is the store's own guard.
	ErrInvalid = errors.New("store: invalid request")
	// ErrFuture means an event time is too far ahead of the node's clock.
	ErrFuture = errors.New("store: event time is too far in the future")
	// ErrFailed means a commit failed on disk. The store refuses further writes
	// after that: its memory may no longer match its files.
	ErrFailed = errors.New("store: a commit failed; the store refuses writes until restarted")
)

// ErrDamaged means a data file is damaged: it failed a check on open, or a
// transaction found damage while running (the store then refuses writes).
// The error is a *DamagedError naming the file.
var ErrDamaged = errors.New("store: data file damaged")
