// Package deploy_test keeps the deployment files honest: the YAML parses,
// every flag and ABACUS_* variable they use is one the agent has, the probes
// hit /healthz and /readyz, the --join names point at nodes that exist, and
// docs/OPERATIONS.md mentions every deployment file, every agent flag and
// every metric the code registers.
//
// Nothing here runs Docker, Kubernetes or systemd; the machine the files were
// written on has none of them running.
package deploy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// The files under test, relative to the repository root.
const (
	dockerfile   = "Dockerfile"
	dockerignore = ".dockerignore"
	composeFile  = "deploy/docker-compose.yml"
	k8sDir       = "deploy/kubernetes"
	unitFile     = "deploy/systemd/abacus.service"
	envFile      = "deploy/systemd/abacus.env"
	operations   = "docs/OPERATIONS.md"
)

var metricSources = []string{"cmd/abacus/internal/agent/metrics.go", "api/metrics.go"}

func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	flagsOnce sync.Once
	flagsSet  map[string]bool
	flagsErr  error
)

var usageFlagRE = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`)

// agentFlags builds the agent and returns the flags `abacus agent -h` lists.
func agentFlags(t testing.TB) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	flagsOnce.Do(func() {
		bin := filepath.Join(dir, "abacus")
		build := exec.Command("go", "build", "-o", bin, "./cmd/abacus")
		build.Dir = root(t)
		if out, err := build.CombinedOutput(); err != nil {
			flagsErr = fmt.Errorf("go build ./cmd/abacus: %v\n%s", err, out)
			return
		}
		out, err := exec.Command(bin, "agent", "-h").Output()
		if err != nil {
			flagsErr = fmt.Errorf("abacus agent -h: %v", err)
			return
		}
		flagsSet = map[string]bool{}
		for _, m := range usageFlagRE.FindAllStringSubmatch(string(out), -1) {
			flagsSet[m[1]] = true
		}
		for _, f := range []string{"data-dir", "http-addr", "join", "gossip-key-file"} {
			if !flagsSet[f] {
				flagsErr = fmt.Errorf("abacus agent -h does not list --%s; the usage parser is broken:\n%s", f, out)
			}
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagsSet
}

// checkFlag fails unless name is an agent flag.
func checkFlag(t *testing.T, flags map[string]bool, file, name, as string) {
	t.Helper()
	if !flags[name] {
		t.Errorf("%s: %s: abacus agent has no flag --%s", file, as, name)
	}
}

var (
	flagTokenRE  = regexp.MustCompile(`^--([a-z][a-z0-9-]*)(=.*)?$`)
	envVarRE     = regexp.MustCompile(`ABACUS_[A-Z0-9_]*[A-Z0-9]`)
	envSettingRE = regexp.MustCompile(`^(ABACUS_[A-Z0-9_]*[A-Z0-9])=`)
)

// usesIn returns the flags (tokens of s starting with --) and ABACUS_*
// variables s names.
func usesIn(s string) (flags, vars []string) {
	for _, tok := range strings.Fields(s) {
		if m := flagTokenRE.FindStringSubmatch(tok); m != nil {
			flags = append(flags, m[1])
		}
	}
	return flags, envVarRE.FindAllString(s, -1)
}

// envFlag maps ABACUS_FOO_BAR to foo-bar.
func envFlag(v string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(v, "ABACUS_")), "_", "-")
}

func checkUses(t *testing.T, flags map[string]bool, file, s string) (n int) {
	t.Helper()
	fs, vs := usesIn(s)
	for _, f := range fs {
		checkFlag(t, flags, file, f, "--"+f)
	}
	for _, v := range vs {
		checkFlag(t, flags, file, envFlag(v), v)
	}
	return len(fs) + len(vs)
}

// scalars returns every scalar of a YAML tree, keys included.
func scalars(n *yaml.Node) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	if n.Alias != nil {
		out = append(out, scalars(n.Alias)...)
	}
	for _, c := range n.Content {
		out = append(out, scalars(c)...)
	}
	return out
}

// yamlDocs parses every document of a YAML file, both as nodes (for a walk
// over every scalar) and as plain maps.
func yamlDocs(t *testing.T, rel string) ([]*yaml.Node, []map[string]any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, rel)))
	var nodes []*yaml.Node
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		nodes = append(nodes, &n)
	}
	var maps []map[string]any
	for _, n := range nodes {
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if m != nil {
			maps = append(maps, m)
		}
	}
	if len(maps) == 0 {
		t.Fatalf("%s: no YAML documents", rel)
	}
	return nodes, maps
}

// get walks a decoded YAML tree: string keys index maps, ints index lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// flagValue returns the value of --name=value among args.
func flagValue(args []any, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(str(a), "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestDockerfile(t *testing.T) {
	flags := agentFlags(t)
	src := readFile(t, dockerfile)
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		if s := strings.TrimSpace(cur.String()); s != "" {
			lines = append(lines, s)
		}
		cur.Reset()
	}
	var froms, exposes []string
	env := map[string]string{}
	var entrypoint, user, volume string
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			froms = append(froms, rest)
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			checkUses(t, flags, dockerfile, rest)
		case "ENTRYPOINT", "CMD":
			entrypoint = rest
			checkUses(t, flags, dockerfile, strings.NewReplacer(`"`, " ", ",", " ", "[", " ", "]", " ").Replace(rest))
		case "EXPOSE":
			exposes = append(exposes, strings.Fields(rest)...)
		case "USER":
			user = rest
		case "VOLUME":
			volume = rest
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26") || !strings.HasPrefix(froms[1], "gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("FROM %q: want a golang:1.26 build stage and a distroless static nonroot final stage", froms)
	}
	if !strings.Contains(src, "CGO_ENABLED=0") || !strings.Contains(src, "-trimpath") || !strings.Contains(src, `-ldflags "-s -w`) {
		t.Error("the build is not static and trimmed (CGO_ENABLED=0, -trimpath, -ldflags \"-s -w\")")
	}
	var ep []string
	if err := yaml.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/abacus", "agent"}) {
		t.Errorf("ENTRYPOINT %s: want [\"/abacus\", \"agent\"]", entrypoint)
	}
	for k, v := range map[string]string{"ABACUS_DATA_DIR": "/data", "ABACUS_HTTP_ADDR": "0.0.0.0:4000", "ABACUS_GOSSIP_ADDR": "0.0.0.0:7946"} {
		if env[k] != v {
			t.Errorf("ENV %s=%q, want %q", k, env[k], v)
		}
	}
	for _, p := range []string{"4000/tcp", "7946/tcp", "7946/udp"} {
		if !slices.Contains(exposes, p) {
			t.Errorf("EXPOSE %v lacks %s", exposes, p)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if !strings.Contains(volume, "/data") {
		t.Errorf("VOLUME %q: want /data", volume)
	}
	if strings.Contains(src, "\nHEALTHCHECK") {
		t.Error("HEALTHCHECK cannot run in distroless (no shell, no curl)")
	}
}

func TestDockerignore(t *testing.T) {
	lines := strings.Split(readFile(t, dockerignore), "\n")
	for _, want := range []string{".git", "**/*.key"} {
		if !slices.Contains(lines, want) {
			t.Errorf("%s does not exclude %s", dockerignore, want)
		}
	}
	for _, l := range lines {
		if l = strings.TrimSpace(l); l == "go.mod" || l == "go.sum" || l == "cmd" || l == "*.go" {
			t.Errorf("%s excludes %s, which the build needs", dockerignore, l)
		}
	}
}

func TestCompose(t *testing.T) {
	flags := agentFlags(t)
	nodes, docs := yamlDocs(t, composeFile)
	n := 0
	for _, s := range scalars(nodes[0]) {
		n += checkUses(t, flags, composeFile, s)
	}
	if n == 0 {
		t.Errorf("%s uses no flags or ABACUS_* variables", composeFile)
	}
	doc := docs[0]
	services, _ := doc["services"].(map[string]any)
	if len(services) < 3 {
		t.Fatalf("%s: %d services, want a cluster", composeFile, len(services))
	}
	names, dcs, volumes := map[string]bool{}, map[string]bool{}, map[string]string{}
	for name, svc := range services {
		cmd := list(get(svc, "command"))
		node, ok := flagValue(cmd, "node-name")
		if !ok || names[node] {
			t.Errorf("service %s: --node-name %q missing or not unique", name, node)
		}
		names[node] = true
		dc, ok := flagValue(cmd, "dc")
		if !ok {
			t.Errorf("service %s: no --dc", name)
		}
		dcs[dc] = true
		join, _ := flagValue(cmd, "join")
		for _, addr := range strings.Split(join, ",") {
			host, _, _ := strings.Cut(addr, ":")
			if services[host] == nil || host == name {
				t.Errorf("service %s: --join %s is not another service", name, addr)
			}
		}
		keyFile, _ := flagValue(cmd, "gossip-key-file")
		secret, ok := strings.CutPrefix(keyFile, "/run/secrets/")
		if !ok || get(doc, "secrets", secret, "file") == nil || !slices.Contains(list(get(svc, "secrets")), any(secret)) {
			t.Errorf("service %s: --gossip-key-file %q is not a compose secret file it mounts", name, keyFile)
		}
		for _, p := range list(get(svc, "ports")) {
			if !strings.HasPrefix(str(p), "127.0.0.1:") {
				t.Errorf("service %s: port %v is not published on 127.0.0.1 only", name, p)
			}
		}
		vols := list(get(svc, "volumes"))
		if len(vols) != 1 {
			t.Errorf("service %s: volumes %v, want its own data volume", name, vols)
			continue
		}
		vol, target, _ := strings.Cut(str(vols[0]), ":")
		if target != "/data" || !hasKey(doc, "volumes", vol) {
			t.Errorf("service %s: volume %v is not a named volume on /data", name, vols[0])
		}
		if other, dup := volumes[vol]; dup {
			t.Errorf("services %s and %s share volume %s", name, other, vol)
		}
		volumes[vol] = name
	}
	if len(dcs) < 3 {
		t.Errorf("%s: datacenters %v, want 3", composeFile, dcs)
	}
}

func hasKey(doc map[string]any, section, key string) bool {
	m, _ := doc[section].(map[string]any)
	_, ok := m[key]
	return ok
}

func TestKubernetes(t *testing.T) {
	flags := agentFlags(t)
	files, err := filepath.Glob(filepath.Join(root(t), k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	byKind := map[string][]map[string]any{}
	for _, f := range files {
		rel, _ := filepath.Rel(root(t), f)
		nodes, docs := yamlDocs(t, rel)
		for _, n := range nodes {
			for _, s := range scalars(n) {
				checkUses(t, flags, rel, s)
			}
		}
		for _, d := range docs {
			kind := str(d["kind"])
			if kind == "" || d["apiVersion"] == nil || get(d, "metadata", "name") == nil {
				t.Errorf("%s: a document without kind, apiVersion or metadata.name", rel)
			}
			byKind[kind] = append(byKind[kind], d)
		}
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["Service"]) != 2 || len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want 1 StatefulSet, 2 Services, 1 PodDisruptionBudget; have %d, %d, %d",
			len(byKind["StatefulSet"]), len(byKind["Service"]), len(byKind["PodDisruptionBudget"]))
	}
	sts := byKind["StatefulSet"][0]
	stsName, svcName := str(get(sts, "metadata", "name")), str(get(sts, "spec", "serviceName"))
	replicas, _ := get(sts, "spec", "replicas").(int)
	podLabels, _ := get(sts, "spec", "template", "metadata", "labels").(map[string]any)

	var headless map[string]any
	for _, svc := range byKind["Service"] {
		if str(get(svc, "metadata", "name")) == svcName {
			headless = svc
		}
		if !selects(get(svc, "spec", "selector"), podLabels) {
			t.Errorf("Service %s does not select the StatefulSet's pods", get(svc, "metadata", "name"))
		}
	}
	switch {
	case headless == nil:
		t.Errorf("StatefulSet serviceName %q names no Service", svcName)
	case str(get(headless, "spec", "clusterIP")) != "None":
		t.Errorf("Service %s is not headless (clusterIP: None)", svcName)
	case get(headless, "spec", "publishNotReadyAddresses") != true:
		t.Errorf("Service %s must publish not-ready pods: a node is ready only after joining", svcName)
	}
	if !selects(get(byKind["PodDisruptionBudget"][0], "spec", "selector", "matchLabels"), podLabels) {
		t.Error("the PodDisruptionBudget does not select the StatefulSet's pods")
	}
	if replicas != 3 {
		t.Errorf("replicas %d, want 3", replicas)
	}
	if len(list(get(sts, "spec", "volumeClaimTemplates"))) == 0 {
		t.Error("no volumeClaimTemplates")
	}

	pod := get(sts, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true {
		t.Error("pod securityContext: runAsNonRoot is not true")
	}
	containers := list(get(pod, "containers"))
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	c := containers[0]
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("container securityContext: readOnlyRootFilesystem is not true")
	}
	if get(c, "resources", "requests") == nil {
		t.Error("container has no resource requests")
	}
	if p := str(get(c, "readinessProbe", "httpGet", "path")); p != "/readyz" {
		t.Errorf("readinessProbe path %q, want /readyz", p)
	}
	if p := str(get(c, "livenessProbe", "httpGet", "path")); p != "/healthz" {
		t.Errorf("livenessProbe path %q, want /healthz", p)
	}
	if p := get(c, "startupProbe", "httpGet", "path"); p != nil && p != "/healthz" && p != "/readyz" {
		t.Errorf("startupProbe path %v, want /healthz or /readyz", p)
	}
	if grace, _ := get(pod, "terminationGracePeriodSeconds").(int); grace <= 30 {
		t.Errorf("terminationGracePeriodSeconds %d: the agent takes up to 30 s to shut down", grace)
	}

	args := list(get(c, "args"))
	var want []string
	for i := range replicas {
		want = append(want, stsName+"-"+strconv.Itoa(i)+"."+svcName+":7946")
	}
	if join, _ := flagValue(args, "join"); join != strings.Join(want, ",") {
		t.Errorf("--join=%s, want the headless Service's pod names %s", join, strings.Join(want, ","))
	}
	env := map[string]string{}
	for _, e := range list(get(c, "env")) {
		env[str(get(e, "name"))] = str(get(e, "valueFrom", "fieldRef", "fieldPath"))
	}
	if v, _ := flagValue(args, "advertise"); v != "$(POD_IP):7946" || env["POD_IP"] != "status.podIP" {
		t.Errorf("--advertise=%s (POD_IP from %q): want the pod IP from the downward API", v, env["POD_IP"])
	}
	if v, _ := flagValue(args, "node-name"); v != "$(POD_NAME)" || env["POD_NAME"] != "metadata.name" {
		t.Errorf("--node-name=%s (POD_NAME from %q): want the pod name from the downward API", v, env["POD_NAME"])
	}
	keyFile, _ := flagValue(args, "gossip-key-file")
	mounted := false
	for _, m := range list(get(c, "volumeMounts")) {
		dir := str(get(m, "mountPath"))
		if dir != "" && strings.HasPrefix(keyFile, dir+"/") {
			for _, v := range list(get(pod, "volumes")) {
				if get(v, "name") == get(m, "name") && get(v, "secret", "secretName") != nil {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("--gossip-key-file=%s is not on a mounted Secret", keyFile)
	}
}

// selects reports whether every label of selector is on labels.
func selects(selector any, labels map[string]any) bool {
	sel, _ := selector.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestSystemd(t *testing.T) {
	flags := agentFlags(t)
	keys := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(readFile(t, unitFile)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("%s: not key=value: %q", unitFile, l)
			continue
		}
		keys[k] = append(keys[k], v)
		if k == "ExecStart" || k == "Environment" {
			checkUses(t, flags, unitFile, v)
		}
	}
	if f := strings.Fields(strings.Join(keys["ExecStart"], " ")); len(f) < 2 || filepath.Base(f[0]) != "abacus" || f[1] != "agent" {
		t.Errorf("ExecStart=%v: want abacus agent", keys["ExecStart"])
	}
	for k, want := range map[string]string{
		"Restart": "on-failure", "StateDirectory": "abacus", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "KillSignal": "SIGTERM",
	} {
		if !slices.Contains(keys[k], want) {
			t.Errorf("%s: %s=%v, want %s", unitFile, k, keys[k], want)
		}
	}
	if len(keys["User"]) == 0 && !slices.Contains(keys["DynamicUser"], "yes") {
		t.Errorf("%s: neither User= nor DynamicUser=yes", unitFile)
	}
	stop := strings.Join(keys["TimeoutStopSec"], "")
	secs, err := strconv.Atoi(strings.TrimSuffix(stop, "s"))
	if err != nil || secs <= 30 {
		t.Errorf("%s: TimeoutStopSec=%s: the agent takes up to 30 s to shut down", unitFile, stop)
	}

	n := 0
	sc = bufio.NewScanner(strings.NewReader(readFile(t, envFile)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		commented := strings.HasPrefix(l, "#")
		// Commented-out settings are suggestions too: check them.
		if m := envSettingRE.FindStringSubmatch(strings.TrimLeft(l, "# ")); m != nil {
			n += checkUses(t, flags, envFile, m[1])
		} else if l != "" && !commented {
			t.Errorf("%s: not ABACUS_*=value: %q", envFile, l)
		}
	}
	if n == 0 {
		t.Errorf("%s sets nothing", envFile)
	}
}

var metricRE = regexp.MustCompile(`abacus_[a-z_]+`)

// registeredMetrics greps the metric names out of the code that registers
// them.
func registeredMetrics(t *testing.T) []string {
	var names []string
	for _, f := range metricSources {
		for _, m := range metricRE.FindAllString(readFile(t, f), -1) {
			if !slices.Contains(names, m) {
				names = append(names, m)
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in %v", len(names), metricSources)
	}
	return names
}

func TestOperationsGuide(t *testing.T) {
	doc := readFile(t, operations)

	t.Run("deploy files", func(t *testing.T) {
		files := []string{dockerfile, dockerignore}
		err := filepath.WalkDir(filepath.Join(root(t), "deploy"), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(root(t), p)
			files = append(files, filepath.ToSlash(rel))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f == "deploy/gossip.key" { // made by the operator, never committed
				continue
			}
			if !strings.Contains(doc, "`"+f+"`") {
				t.Errorf("%s does not mention `%s`", operations, f)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		names := registeredMetrics(t)
		for _, m := range names {
			if !regexp.MustCompile(`\b` + m + `\b`).MatchString(doc) {
				t.Errorf("%s does not mention metric %s", operations, m)
			}
		}
		// And it names no metric the code does not register.
		for _, m := range metricRE.FindAllString(doc, -1) {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && slices.Contains(names, b) {
					base = b
				}
			}
			if !slices.Contains(names, base) {
				t.Errorf("%s mentions %s, which the code does not register", operations, m)
			}
		}
	})

	t.Run("flags", func(t *testing.T) {
		flags := agentFlags(t)
		for f := range flags {
			if f == "h" || f == "help" {
				continue
			}
			if !strings.Contains(doc, "`--"+f+"`") {
				t.Errorf("%s does not mention `--%s`", operations, f)
			}
		}
	})
}
