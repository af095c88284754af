package store_test

import (
	"bytes"
	"cmp"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// memStateFiles are the files that may touch memState's fields: the rest of
// the store goes through its methods, so that its lock is taken where it
// must be and nowhere else.
var memStateFiles = map[string]bool{"memstate.go": true}

// TestMemStateBoundary type-checks the package's non-test files and fails
// on any use of a field of memState outside memStateFiles: a selector
// (s.mem.seq, or s.seq were memState embedded again) or a key of a
// composite literal.
func TestMemStateBoundary(t *testing.T) {
	inside := 0
	for _, u := range memStateFieldUses(t, ".") {
		if memStateFiles[filepath.Base(u.pos.Filename)] {
			inside++
			continue
		}
		t.Errorf("%s: memState's field %s used outside memstate.go: call a method of memState", u.pos, u.field)
	}
	if inside == 0 {
		t.Error("no use of memState's fields found, not even in memstate.go: the check finds nothing")
	}
}

type fieldUse struct {
	pos   token.Position
	field string
}

// memStateFieldUses returns every use of a field of the struct memState in
// the non-test Go files of the package in dir.
func memStateFieldUses(t *testing.T, dir string) []fieldUse {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	exports := exportData(t, dir)
	conf := types.Config{Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, os.ErrNotExist
		}
		return os.Open(f)
	})}
	info := &types.Info{Uses: make(map[*ast.Ident]types.Object)}
	pkg, err := conf.Check("github.com/abacus-counter/abacus/store", fset, files, info)
	if err != nil {
		t.Fatalf("type-check the store: %v", err)
	}
	obj := pkg.Scope().Lookup("memState")
	if obj == nil {
		t.Fatal("no type memState in the store")
	}
	st, ok := obj.Type().Underlying().(*types.Struct)
	if !ok {
		t.Fatalf("memState is %v, not a struct", obj.Type().Underlying())
	}
	fields := make(map[types.Object]bool)
	for i := range st.NumFields() {
		fields[st.Field(i)] = true
	}
	var out []fieldUse
	for id, o := range info.Uses {
		if fields[o] {
			out = append(out, fieldUse{fset.Position(id.Pos()), id.Name})
		}
	}
	slices.SortFunc(out, func(a, b fieldUse) int {
		return cmp.Or(strings.Compare(a.pos.Filename, b.pos.Filename), cmp.Compare(a.pos.Offset, b.pos.Offset))
	})
	return out
}

// exportData maps the import path of every package the package in dir
// depends on to its compiled export data, as the go command builds it.
func exportData(t *testing.T, dir string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", ".")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.Bytes())
	}
	m := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if path, file, ok := strings.Cut(line, "\t"); ok && file != "" {
			m[path] = file
		}
	}
	return m
}
