//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"sync"
	"time"
)

// snapshot reads, from every node at once, every counter's total, its minute
// windows over [from, to), the counters it lists and the members it sees.
func (c *cluster) snapshot(ctx context.Context, names []string, from, to time.Time) []NodeObservation {
	out := make([]NodeObservation, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.read(ctx, n, names, from, to)
		}()
	}
	wg.Wait()
	return out
}

func (c *cluster) read(ctx context.Context, n *node, names []string, from, to time.Time) NodeObservation {
	o := NodeObservation{Node: n.name, Totals: map[string]uint64{}, Windows: map[string]map[int64]uint64{}, Listed: map[string]uint64{}, Members: map[string]string{}}
	fail := func(err error) NodeObservation {
		return NodeObservation{Node: n.name, Err: err.Error()}
	}
	for _, name := range names {
		var t struct {
			Total uint64 `json:"total"`
		}
		if err := c.getJSON(ctx, n, "/v1/counters/"+url.PathEscape(name), &t); err != nil {
			return fail(err)
		}
		o.Totals[name] = t.Total
		var rg struct {
			Points []struct {
				Start time.Time `json:"start"`
				Count uint64    `json:"count"`
			} `json:"points"`
			Resolution string `json:"resolution"`
		}
		q := fmt.Sprintf("/v1/counters/%s/range?from=%d&to=%d&step=1m", url.PathEscape(name), from.Unix(), to.Unix())
		if err := c.getJSON(ctx, n, q, &rg); err != nil {
			return fail(err)
		}
		if rg.Resolution != "1m" {
			return fail(fmt.Errorf("range of %s answered at resolution %q, want 1m", name, rg.Resolution))
		}
		w := map[int64]uint64{}
		for _, p := range rg.Points {
			if p.Count > 0 {
				w[p.Start.Unix()] = p.Count
			}
		}
		o.Windows[name] = w
	}
	after := ""
	for pages := 0; pages < 100; pages++ {
		var l struct {
			Counters []struct {
				Name  string `json:"name"`
				Total uint64 `json:"total"`
			} `json:"counters"`
			Next *string `json:"next"`
		}
		q := "/v1/counters?limit=1000"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		if err := c.getJSON(ctx, n, q, &l); err != nil {
			return fail(err)
		}
		for _, x := range l.Counters {
			o.Listed[x.Name] = x.Total
		}
		if l.Next == nil || *l.Next == "" {
			break
		}
		after = *l.Next
	}
	var v clusterView
	if err := c.getJSON(ctx, n, "/v1/cluster", &v); err != nil {
		return fail(err)
	}
	o.Members[v.Self.Name] = "alive"
	for _, m := range v.Members {
		o.Members[m.Name] = m.State
	}
	return o
}

// disagreement says why the nodes do not agree yet: a node did not answer,
// does not see another alive, or reports other totals or windows than the
// first node. "" means they agree.
func disagreement(obs []NodeObservation) string {
	for _, o := range obs {
		if o.Err != "" {
			return o.Node + ": " + o.Err
		}
		for _, p := range obs {
			if st := o.Members[p.Node]; st != "alive" {
				return fmt.Sprintf("%s sees %s as %q", o.Node, p.Node, st)
			}
		}
	}
	for _, o := range obs[1:] {
		if !maps.Equal(o.Totals, obs[0].Totals) || !maps.Equal(o.Listed, obs[0].Listed) {
			return fmt.Sprintf("totals: %s %v, %s %v", obs[0].Node, obs[0].Totals, o.Node, o.Totals)
		}
		for name, w := range obs[0].Windows {
			if !maps.Equal(w, o.Windows[name]) {
				for s, c := range w {
					if o.Windows[name][s] != c {
						return fmt.Sprintf("%s window %s: %s %d, %s %d", name, time.Unix(s, 0).UTC().Format("15:04"), obs[0].Node, c, o.Node, o.Windows[name][s])
					}
				}
				return fmt.Sprintf("windows of %s differ between %s and %s", name, obs[0].Node, o.Node)
			}
		}
	}
	return ""
}

// converge polls every node each second until all agree in three polls in a
// row spanning at least 6 s (two of the WAN profile's digest rounds), or
// until healed+bound. Seconds counts from healed to the first poll of that
// agreeing run.
func (c *cluster) converge(ctx context.Context, names []string, from, to, healed time.Time, bound time.Duration, logf func(string, ...any)) Observation {
	obs := Observation{From: from, To: to, Bound: bound.Seconds()}
	var streakStart time.Time
	streak := 0
	for {
		at := time.Now()
		snap := c.snapshot(ctx, names, from, to)
		obs.Nodes = snap
		why := disagreement(snap)
		if why == "" {
			if streak == 0 {
				streakStart = at
			}
			streak++
			if streak >= 3 && time.Since(streakStart) >= 6*time.Second {
				obs.Converged = true
				obs.Seconds = max(0, streakStart.Sub(healed).Seconds())
				return obs
			}
		} else {
			streak = 0
		}
		if time.Since(healed) > bound || ctx.Err() != nil {
			if streak > 0 {
				// Agreeing when time ran out, but not for long enough.
				obs.Seconds = max(0, streakStart.Sub(healed).Seconds())
				obs.Converged = obs.Seconds <= bound.Seconds()
			}
			return obs
		}
		if elapsed := time.Since(healed).Truncate(time.Second); elapsed%(10*time.Second) == 0 && streak == 0 {
			logf("waiting for the nodes to agree (%v since healing): %s", elapsed, why)
		}
		sleep(ctx, time.Second)
	}
}
