package gossip

import (
	"fmt"

	"github.com/hashicorp/memberlist"
)

// aliveDelegate refuses nodes that do not belong: another cluster, another
// window configuration, or a second live member with this node's replica ID.
type aliveDelegate Gossip

var _ memberlist.AliveDelegate = (*aliveDelegate)(nil)

func (a *aliveDelegate) NotifyAlive(n *memberlist.Node) error {
	return (*Gossip)(a).admit(n)
}

// mergeDelegate applies the same rules to the members a join would bring in,
// so that joining a wrong cluster fails with a reason.
type mergeDelegate Gossip

var _ memberlist.MergeDelegate = (*mergeDelegate)(nil)

func (m *mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	g := (*Gossip)(m)
	for _, n := range peers {
		if err := g.admitCluster(n); err != nil {
			return err
		}
	}
	return nil
}

func (g *Gossip) admit(n *memberlist.Node) error {
	if err := g.admitCluster(n); err != nil {
		g.stats.refused.Add(1)
		return err
	}
	if n.Name == g.cfg.NodeName {
		return nil
	}
	m, _ := decodeMeta(n.Meta)
	if m.replica != g.self.replica {
		return nil
	}
	// Two live members with one replica ID: a copied data directory. Both
	// would raise the same entries and hide each other's increments under the
	// max. The one that started later refuses writes; neither takes the other
	// as a peer.
	if m.started < g.self.started || (m.started == g.self.started && n.Name < g.cfg.NodeName) {
		err := fmt.Errorf("refusing writes: node %s at %s has this node's replica ID %s and was there first; this data directory is a copy — give this node an empty data directory", n.Name, n.Address(), g.self.replica)
		if g.duplicate.CompareAndSwap(nil, &err) {
			g.log.Error(err.Error())
		}
	}
	g.stats.refused.Add(1)
	return fmt.Errorf("node %s has this node's replica ID %s", n.Name, g.self.replica)
}

// admitCluster checks cluster name and window configuration.
func (g *Gossip) admitCluster(n *memberlist.Node) error {
	if n.Name == g.cfg.NodeName {
		return nil
	}
	m, err := decodeMeta(n.Meta)
	switch {
	case err != nil:
		return fmt.Errorf("node %s: unreadable metadata: %v", n.Name, err)
	case m.cluster != g.self.cluster:
		return fmt.Errorf("node %s belongs to cluster %q, not %q", n.Name, m.cluster, g.self.cluster)
	case m.windows != g.self.windows:
		return fmt.Errorf("node %s keeps other windows than this node (%s); the whole cluster must agree", n.Name, g.cfg.Windows)
	}
	return nil
}
