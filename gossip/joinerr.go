package gossip

import (
	"errors"
	"strings"
)

// joinError rewrites memberlist's Join error, a multi-error of "failed to
// join ADDR: CAUSE" lines, as one line: each address with what its cause
// most likely means and the flag that fixes it. The raw cause stays at the
// end of each part, for the search engine.
func joinError(err error) error {
	if err == nil {
		return nil
	}
	var parts []error
	if m, ok := err.(interface{ WrappedErrors() []error }); ok {
		parts = m.WrappedErrors()
	} else {
		parts = []error{err}
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString("; ")
		}
		msg := p.Error()
		addr, cause, ok := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(msg, "failed to join "), "failed to resolve "), ": ")
		if !ok {
			b.WriteString(msg)
			continue
		}
		b.WriteString(addr)
		b.WriteString(": ")
		if hint := joinHint(cause); hint != "" {
			b.WriteString(hint)
			b.WriteString(" (")
			b.WriteString(cause)
			b.WriteString(")")
		} else {
			b.WriteString(cause)
		}
	}
	return errors.New(b.String())
}

// joinHint explains a cause of a failed join, or returns "".
func joinHint(cause string) string {
	c := strings.ToLower(cause)
	switch {
	case strings.Contains(c, "connection refused"):
		return "nothing listens there: is that node running, and is the --join address its --gossip-addr?"
	case strings.Contains(c, "no such host"):
		return "unknown host name: check --join"
	case strings.Contains(c, "i/o timeout"):
		return "no answer: a firewall (TCP and UDP must be open), or the wrong address in --join?"
	case strings.Contains(c, "remote state is encrypted and encryption is not configured"):
		return "the cluster encrypts gossip and this node has no key: set --gossip-key-file to the cluster's key file"
	case strings.Contains(c, "encryption is configured but remote state is not encrypted"):
		return "this node has a gossip key and that node has none: give every node the same --gossip-key-file"
	case strings.Contains(c, "no installed keys could decrypt"):
		return "wrong gossip key: --gossip-key-file must hold the key the cluster uses"
	case strings.Contains(c, "eof"), strings.Contains(c, "connection reset"):
		return "that node hung up: its gossip key (--gossip-key-file) or --cluster-name differs from this node's"
	case strings.Contains(c, "merge canceled"):
		return "that node refused this one (see its log): is --cluster-name or --windows different?"
	}
	return ""
}
