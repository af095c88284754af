package gossip

import "errors"

// Errors of ForceLeave.
var (
	ErrUnknownMember = errors.New("gossip: no such member")
	ErrMemberAlive   = errors.New("gossip: member is alive")
)
