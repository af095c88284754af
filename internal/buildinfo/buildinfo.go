// Package buildinfo says which build of Abacus is running: its version, the
// commit it was built from and the Go version that built it. The CLI's
// version command, the abacus_build_info metric and the Prometheus API's
// buildinfo route all read it from here, so that they never disagree.
//
// A release sets the version at link time:
//
//	go build -ldflags "-X github.com/abacus-counter/abacus/internal/buildinfo.version=v1.2.0" ./cmd/abacus
//
// Without it, the version and commit come from what the Go toolchain stamps
// into the binary (runtime/debug.ReadBuildInfo): a build in a git checkout
// gets a pseudo-version and the commit (with "+dirty" if the tree had
// changes); "go run" and builds outside a checkout say "devel" and
// "unknown". Everything here is read-only after init and safe for
// concurrent use.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// version is set with -ldflags "-X …/buildinfo.version=v1.2.0"; empty means
// take it from the toolchain's stamp.
var version string

// revision may be set the same way, for builds without git metadata (a
// container build that does not copy .git).
var revision string

// Info is one build's identity.
type Info struct {
	Version   string // v1.2.0, a Go pseudo-version, or "devel"
	Revision  string // the commit, with "+dirty" for a modified tree; "unknown" if not stamped
	GoVersion string // go1.26.8
	Time      string // commit time, RFC 3339, when stamped; else empty
}

var (
	once sync.Once
	info Info
)

// Get returns the running build's Info.
func Get() Info {
	once.Do(func() { info = read(version, revision, debug.ReadBuildInfo) })
	return info
}

func read(ver, rev string, readBI func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: ver, Revision: rev, GoVersion: runtime.Version()}
	if bi, ok := readBI(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		var dirty bool
		var vcsRev string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			case "vcs.time":
				in.Time = s.Value
			}
		}
		if in.Revision == "" && vcsRev != "" {
			in.Revision = vcsRev
			if dirty {
				in.Revision += "+dirty"
			}
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	return in
}

// String is one line for people: "abacus v1.2.0 (commit 1a2b3c4d5e6f, go1.26.8)".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 && !strings.Contains(rev[:12], "+") {
		short := rev[:12]
		if strings.HasSuffix(rev, "+dirty") {
			short += "+dirty"
		}
		rev = short
	}
	return "abacus " + i.Version + " (commit " + rev + ", " + i.GoVersion + ")"
}
