package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// runRecover rebuilds a damaged data directory (store.Recover): the node
// must be stopped. On its next start it takes no write before its peers
// have given back this replica's entries.
func runRecover(args []string, stdout, stderr io.Writer) error {
	def := window.DefaultConfig()
	fs := flag.NewFlagSet("abacus recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./abacus-data", "the damaged data directory (the node must be stopped)")
	windows := fs.String("windows", def.String(), "resolutions and retention, used only if state.db no longer says")
	ignoreSchema := fs.Bool("ignore-schema", false, "salvage a state.db whose schema reads as a newer build's as this build's schema: only when no newer build ever ran on the directory (the schema value is damaged)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: abacus recover --data-dir DIR\n\nRebuilds a damaged data directory: salvages what state.db and journal.db\nstill give into a new state.db with the same replica ID, keeps the old files\nas *.damaged-TIME, and marks the node restored: on its next start it takes\nno write until its peers have given back this replica's entries.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	w, err := window.ParseConfig(*windows)
	if err != nil {
		return fmt.Errorf("--windows: %v", err)
	}
	rep, err := store.Recover(store.RecoverConfig{Dir: *dataDir, Windows: w, IgnoreSchema: *ignoreSchema})
	if errors.Is(err, store.ErrInUse) {
		return fmt.Errorf("%s is in use: stop the node first", *dataDir)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recovered %s: replica %s, %d counters and windows salvaged, %d journal records merged\n", *dataDir, rep.Replica, rep.Counters, rep.Journal)
	for _, l := range rep.Lost {
		fmt.Fprintf(stdout, "  lost: %s\n", oneLine(l))
	}
	for _, k := range rep.Kept {
		fmt.Fprintf(stdout, "  kept the damaged file as %s\n", k)
	}
	fmt.Fprintf(stdout, "start the node as before: it takes writes once its peers have given back this replica's entries (a node without peers takes them at once, with what was salvaged)\n")
	return nil
}
