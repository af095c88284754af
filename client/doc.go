// Package client talks to an Abacus node over its HTTP API: increments,
// totals, ranges, listings, membership, health and snapshots, with typed
// results.
//
// A Client is made once with New and is safe for concurrent use; it keeps
// connections open between requests, like the http.Client under it. Every
// method takes a context, and Config.Timeout bounds each request on top of it.
//
// A node's error answers (RFC 9457 problem details) come back as *Error, whose
// Type is the stable problem type (urn:abacus:problem:<slug>); anything that
// never got an answer (a refused connection, a timeout, a TLS failure) is the
// transport's error, wrapped with the request it belongs to.
//
// Caveats:
//   - Inc and IncBatch without an idempotency key are not safe to retry: if an
//     answer is lost, a retry may count twice. With a key, a retry to the same
//     node counts once and comes back with Replayed set (keys are per node).
//   - Totals are the answering node's view; nodes converge, but a total read
//     from another node may not include an increment yet.
//   - Relative times ("-6h") are a command-line convenience; this package
//     takes absolute times, and the node, not the client, decides "now" when a
//     time is left zero.
package client
