package gossip

import (
	"errors"
	"strings"
	"testing"
)

type multi []error

func (m multi) Error() string          { return "2 errors occurred:\n\t* …" }
func (m multi) WrappedErrors() []error { return m }

func TestJoinError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused and wrong key", multi{
			errors.New("failed to join 10.0.0.2:7946: dial tcp 10.0.0.2:7946: connect: connection refused"),
			errors.New("failed to join 10.0.0.3:7946: No installed keys could decrypt the message"),
		}, "10.0.0.2:7946: nothing listens there: is that node running, and is the --join address its --gossip-addr? (dial tcp 10.0.0.2:7946: connect: connection refused); " +
			"10.0.0.3:7946: wrong gossip key: --gossip-key-file must hold the key the cluster uses (No installed keys could decrypt the message)"},
		{"unresolvable", errors.New("failed to resolve abacus-9:7946: lookup abacus-9: no such host"), "abacus-9:7946: unknown host name: check --join (lookup abacus-9: no such host)"},
		{"other", errors.New("something else"), "something else"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := joinError(tt.err).Error()
			if got != tt.want || strings.Contains(got, "\n") {
				t.Fatalf("joinError =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
