package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

const (
	RoleNone  Role = iota // no token needed (health probes)
	RoleRead              // GETs
	RoleWrite             // read, and increments
	RoleAdmin             // everything, snapshots included
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) (Role, bool) {
	switch s {
	case "read":
		return RoleRead, true
	case "write":
		return RoleWrite, true
	case "admin":
		return RoleAdmin, true
	}
	return RoleNone, false
}

// Authorizer maps a bearer token to its role.
type Authorizer interface {
	Role(token string) (Role, bool)
}

// Tokens is a set of bearer tokens with their roles. Tokens are kept as
// SHA-256 digests and every lookup compares against all of them in constant
// time, so neither a token nor which entry matched leaks through timing.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [32]byte
	role   Role
}

// ParseTokens reads "TOKEN ROLE" lines; blank lines and lines starting with #
// are skipped. Roles are read, write and admin.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[32]byte]int{} // token digest → line
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want TOKEN ROLE", n)
		}
		role, ok := parseRole(f[1])
		if !ok {
			return nil, fmt.Errorf("line %d: role %q: want read, write or admin", n, f[1])
		}
		if len(f[0]) < 16 {
			return nil, fmt.Errorf("line %d: token shorter than 16 characters", n)
		}
		d := sha256.Sum256([]byte(f[0]))
		if prev, dup := seen[d]; dup {
			// Which role would win is not what a reader of the file expects
			// either way: refuse it.
			return nil, fmt.Errorf("line %d: token already given on line %d", n, prev)
		}
		seen[d] = n
		t.entries = append(t.entries, tokenEntry{digest: d, role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	return t, nil
}

// LoadTokens reads a token file.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Role returns token's role.
func (t *Tokens) Role(token string) (Role, bool) {
	d := sha256.Sum256([]byte(token))
	role, found := RoleNone, 0
	for _, e := range t.entries {
		eq := subtle.ConstantTimeCompare(d[:], e.digest[:])
		found |= eq
		role = Role(subtle.ConstantTimeSelect(eq, int(e.role), int(role)))
	}
	return role, found == 1
}

// bearer extracts the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// require wraps h so that it runs only for a token holding at least need.
func (s *server) require(need Role, h http.HandlerFunc) http.HandlerFunc {
	if need == RoleNone {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Auth == nil {
			h(w, r)
			return
		}
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="abacus"`)
			writeProblem(w, kindUnauthorized, "send Authorization: Bearer TOKEN")
			return
		}
		role, ok := s.Auth.Role(token)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="abacus", error="invalid_token"`)
			writeProblem(w, kindUnauthorized, "unknown token")
			return
		}
		if role < need {
			writeProblem(w, kindForbidden, "this route needs the "+need.String()+" role; the token has "+role.String())
			return
		}
		h(w, r)
	}
}
