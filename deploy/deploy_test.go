package deploy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// read returns a deployment file's content.
func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rewrite copies src into dir with each old string replaced by its new one,
// and fails if an old string is missing: the test must check the file as
// shipped, only with paths that exist here.
func rewrite(t *testing.T, src, dir string, pairs ...string) string {
	t.Helper()
	s := read(t, src)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s no longer contains %q; update this test", src, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	out := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(read(t, path)))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
}

// dig walks nested maps and lists: dig(doc, "spec", "ports", 0, "name").
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no key %q in %v", k, v)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("no item %d in %v", k, v)
			}
			v = l[k]
		}
	}
	return v
}

func TestYAMLFilesParse(t *testing.T) {
	var n int
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		n++
		docs := yamlDocs(t, path)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", path)
		}
		if strings.HasPrefix(path, "kubernetes/") {
			for i, doc := range docs {
				if doc["apiVersion"] == nil || doc["kind"] == nil {
					t.Errorf("%s document %d: no apiVersion or kind", path, i)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found only %d YAML files", n)
	}
}

// kubeObject returns the object of the given kind and name.
func kubeObject(t *testing.T, file, kind, name string) map[string]any {
	t.Helper()
	for _, doc := range yamlDocs(t, filepath.Join("kubernetes", file)) {
		if doc["kind"] == kind && dig(t, doc, "metadata", "name") == name {
			return doc
		}
	}
	t.Fatalf("no %s %s in %s", kind, name, file)
	return nil
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k := yamlDocs(t, "kubernetes/kustomization.yaml")[0]
	listed := map[string]bool{}
	for _, r := range dig(t, k, "resources").([]any) {
		listed[r.(string)] = true
		if _, err := os.Stat(filepath.Join("kubernetes", r.(string))); err != nil {
			t.Errorf("kustomization lists %s: %v", r, err)
		}
	}
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
}

// vncedgeBinary builds cmd/vncedge once for the tests that run it, stamped
// the way `make build` stamps it (testVersion, testCommit).
var vncedgeBinary = sync.OnceValues(func() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir, err := os.MkdirTemp("", "vncedge-deploy-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vncedge")
	ldflags, err := makeLDFlags(testVersion, testCommit)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goTool, "build", "-ldflags", ldflags, "-o", bin, "./cmd/vncedge")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build ./cmd/vncedge: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	// The rollout test runs this binary as its stand-in for systemctl.
	if dir := os.Getenv(fakeSystemctlEnv); dir != "" {
		os.Exit(fakeSystemctl(dir, os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if bin, err := vncedgeBinary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

func buildVncedge(t *testing.T) string {
	t.Helper()
	bin, err := vncedgeBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// checkConfig runs `vncedge --check` on a config file, with the token file
// replaced by one that exists here.
func checkConfig(t *testing.T, config, tokens string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(buildVncedge(t), "--config", config, "--token-file", tokenFile, "--check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Errorf("vncedge --check --config %s: %v\n%s", config, err, out)
	}
}

func TestExampleConfigsAreAccepted(t *testing.T) {
	checkConfig(t, "systemd/vncedge.yaml", "vm1: 192.168.100.3:5901\n")

	// Kubernetes: the config file (a ConfigMap) and the token file (a Secret).
	cfg := dig(t, kubeObject(t, "configmap.yaml", "ConfigMap", "vncedge-config"), "data", "vncedge.yaml").(string)
	path := filepath.Join(t.TempDir(), "vncedge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := dig(t, kubeObject(t, "tokens.yaml", "Secret", "vncedge-tokens"), "stringData", "tokens").(string)
	checkConfig(t, path, tokens)

	// And --check does reject a bad file, so the two checks above mean something.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen-address: :1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(buildVncedge(t), "--config", bad, "--check").CombinedOutput(); err == nil {
		t.Errorf("vncedge --check accepted an unknown key:\n%s", out)
	}
}

// vncedgeSettings reads drain-timeout and ping-interval from a vncedge
// config file's text.
func vncedgeSettings(t *testing.T, text string) (drain, ping time.Duration) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	d := func(key string) time.Duration {
		s, _ := m[key].(string)
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return v
	}
	return d("drain-timeout"), d("ping-interval")
}

// setting finds the first `name value` or `name=value` in a config text.
func setting(t *testing.T, file, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + pattern + `\s*[= ]\s*"?([^\s";]+)`).FindStringSubmatch(read(t, file))
	if m == nil {
		t.Fatalf("%s: no %s", file, pattern)
	}
	return m[1]
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second // nginx and annotations: bare seconds
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// closeLinger is how long vncedge may take after the drain to flush close
// frames (engine.closeLinger is 5 s) plus a margin.
const closeLinger = 15 * time.Second

// TestTimeoutsAgree checks the numbers that must fit together across files:
// every stop timeout outlasts the drain, and every WebSocket idle timeout in
// front of vncedge outlasts its ping interval.
func TestTimeoutsAgree(t *testing.T) {
	drain, ping := vncedgeSettings(t, read(t, "systemd/vncedge.yaml"))
	if stop := duration(t, setting(t, "systemd/vncedge.service", "TimeoutStopSec")); stop < drain+closeLinger {
		t.Errorf("systemd TimeoutStopSec %v < drain-timeout %v + %v", stop, drain, closeLinger)
	}
	// The slots drain for as long as their ExecStart says, over the file's.
	m := regexp.MustCompile(`(?m)^ExecStart=.*--drain-timeout (\S+)`).FindStringSubmatch(read(t, "systemd/vncedge@.service"))
	if m == nil {
		t.Fatal("vncedge@.service: no --drain-timeout on ExecStart")
	}
	slotDrain := duration(t, m[1])
	if stop := duration(t, setting(t, "systemd/vncedge@.service", "TimeoutStopSec")); stop < slotDrain+closeLinger {
		t.Errorf("vncedge@.service TimeoutStopSec %v < drain-timeout %v + %v", stop, slotDrain, closeLinger)
	}

	cfg := dig(t, kubeObject(t, "configmap.yaml", "ConfigMap", "vncedge-config"), "data", "vncedge.yaml").(string)
	kdrain, kping := vncedgeSettings(t, cfg)
	dep := kubeObject(t, "deployment.yaml", "Deployment", "vncedge")
	pod := dig(t, dep, "spec", "template", "spec")
	grace := time.Duration(dig(t, pod, "terminationGracePeriodSeconds").(int)) * time.Second
	preStop := time.Duration(dig(t, pod, "containers", 0, "lifecycle", "preStop", "sleep", "seconds").(int)) * time.Second
	if preStop <= 0 {
		t.Error("no preStop sleep")
	}
	if grace < preStop+kdrain+closeLinger {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + drain-timeout %v + %v", grace, preStop, kdrain, closeLinger)
	}
	ann := dig(t, kubeObject(t, "ingress.yaml", "Ingress", "vncedge"), "metadata", "annotations").(map[string]any)
	for _, k := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
		if d := duration(t, ann[k].(string)); d <= kping {
			t.Errorf("ingress %s %v <= ping-interval %v", k, d, kping)
		}
	}

	for _, c := range []struct{ file, pattern string }{
		{"tls/haproxy.cfg", "timeout tunnel"},
		{"tls/nginx.conf", "proxy_read_timeout"},
		{"tls/nginx.conf", "proxy_send_timeout"},
	} {
		if d := duration(t, setting(t, c.file, c.pattern)); d <= ping {
			t.Errorf("%s: %s %v <= vncedge ping-interval %v", c.file, c.pattern, d, ping)
		}
	}
	timeouts := dig(t, yamlDocs(t, "tls/traefik.yaml")[0], "entryPoints", "websecure", "transport", "respondingTimeouts")
	for _, k := range []string{"readTimeout", "writeTimeout", "idleTimeout"} {
		// 0 means none: the WebSocket is bounded by vncedge's pings instead.
		if d := duration(t, dig(t, timeouts, k).(string)); d != 0 && d <= ping {
			t.Errorf("traefik %s %v <= vncedge ping-interval %v", k, d, ping)
		}
	}
}

// TestProbesAndPorts checks the Deployment against the admin endpoints and
// the NetworkPolicy against the ports.
func TestProbesAndPorts(t *testing.T) {
	c := dig(t, kubeObject(t, "deployment.yaml", "Deployment", "vncedge"), "spec", "template", "spec", "containers", 0)
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := dig(t, c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
		if got := dig(t, c, probe, "httpGet", "port"); got != "admin" {
			t.Errorf("%s port %v, want admin", probe, got)
		}
	}
	ports := map[string]int{}
	for _, p := range dig(t, c, "ports").([]any) {
		ports[dig(t, p, "name").(string)] = dig(t, p, "containerPort").(int)
	}
	if ports["ws"] != 6080 || ports["admin"] != 6089 {
		t.Errorf("container ports %v", ports)
	}
	cfg := dig(t, kubeObject(t, "configmap.yaml", "ConfigMap", "vncedge-config"), "data", "vncedge.yaml").(string)
	if !strings.Contains(cfg, "admin: 0.0.0.0:6089") {
		t.Error("the pod's admin listener must listen on 0.0.0.0 for the probes")
	}
	np := kubeObject(t, "networkpolicy.yaml", "NetworkPolicy", "vncedge")
	var allowed []int
	for _, rule := range dig(t, np, "spec", "ingress").([]any) {
		for _, p := range dig(t, rule, "ports").([]any) {
			allowed = append(allowed, dig(t, p, "port").(int))
		}
	}
	if len(allowed) != 2 || allowed[0] != 6080 || allowed[1] != 6089 {
		t.Errorf("NetworkPolicy ingress ports %v, want [6080 6089]", allowed)
	}
	sm := kubeObject(t, "servicemonitor.yaml", "ServiceMonitor", "vncedge")
	if dig(t, sm, "spec", "endpoints", 0, "path") != "/metrics" || dig(t, sm, "spec", "endpoints", 0, "port") != "admin" {
		t.Error("ServiceMonitor must scrape /metrics on the admin port")
	}
}

// selfSignedCert writes a certificate and its key for the proxy checks.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile, bothFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "vnc.example.com"},
		DNSNames:     []string{"vnc.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certFile, keyFile, bothFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "both.pem")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, bothFile: append(certPEM, keyPEM...)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, bothFile
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Skipf("%s is not installed here (apt-get install %s to check this file)", name, name)
	}
	return p
}

func TestHAProxyConfig(t *testing.T) {
	haproxy := lookTool(t, "haproxy")
	dir := t.TempDir()
	_, _, both := selfSignedCert(t, dir)
	cfg := rewrite(t, "tls/haproxy.cfg", dir, "/etc/haproxy/certs/vncedge.pem", both)
	out, err := exec.Command(haproxy, "-c", "-f", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	if bytes.Contains(bytes.ToLower(out), []byte("warning")) {
		t.Errorf("haproxy -c warns:\n%s", out)
	}
}

func TestNginxConfig(t *testing.T) {
	nginx := lookTool(t, "nginx")
	dir := t.TempDir()
	cert, key, _ := selfSignedCert(t, dir)
	cfg := rewrite(t, "tls/nginx.conf", dir,
		"/etc/nginx/certs/vncedge.crt", cert,
		"/etc/nginx/certs/vncedge.key", key,
		"/var/log/nginx/", dir+"/",
		"/run/nginx-vncedge.pid", filepath.Join(dir, "nginx.pid"),
	)
	out, err := exec.Command(nginx, "-t", "-c", cfg, "-p", dir, "-e", filepath.Join(dir, "error.log")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("test is successful")) {
		t.Errorf("nginx -t:\n%s", out)
	}
}

func TestSystemdUnit(t *testing.T) {
	analyze := lookTool(t, "systemd-analyze")
	unit := read(t, "systemd/vncedge.service")
	for _, want := range []string{
		"LimitNOFILE=1048576", "ProtectSystem=strict", "Restart=on-failure", "KillSignal=SIGTERM",
		"ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes", "NoNewPrivileges=yes",
	} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}
	// Only ExecStart's binary differs: verify checks that it exists.
	cfg := rewrite(t, "systemd/vncedge.service", t.TempDir(), "/usr/local/bin/vncedge", buildVncedge(t))
	out, err := exec.Command(analyze, "verify", cfg).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		// Any output is a finding: an unknown key is only a warning.
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The slots: the template verifies as an instance, and differs from
	// the plain unit only where a takeover needs it.
	slot := read(t, "systemd/vncedge@.service")
	for _, want := range []string{"Type=notify", "User=vncedge", "DynamicUser=yes",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK", "RestartPreventExitStatus=2"} {
		if !strings.Contains(slot, "\n"+want+"\n") || (want != "User=vncedge" && !strings.Contains(unit, "\n"+want+"\n")) {
			t.Errorf("the units lack %s (the template, and but for User= the plain unit too)", want)
		}
	}
	if !regexp.MustCompile(`(?m)^ExecStart=.* --takeover( |$)`).MatchString(slot) {
		t.Error("vncedge@.service does not start with --takeover")
	}
	// Two units share a dynamic user by its name, and SO_REUSEPORT shares a
	// port only within one user: the plain unit's implied name is vncedge.
	if strings.Contains(unit, "\nUser=") {
		t.Error("vncedge.service names a User=; the slots take over from it only as the same dynamic user (vncedge)")
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "vncedge@a.service")
	tmpl := rewrite(t, "systemd/vncedge@.service", dir, "/usr/local/bin/vncedge", buildVncedge(t))
	if err := os.Rename(tmpl, inst); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(analyze, "verify", inst).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify vncedge@a.service: %v\n%s", err, out)
	}
	if out, err := exec.Command("sh", "-n", "systemd/vncedge-rollout").CombinedOutput(); err != nil {
		t.Errorf("sh -n vncedge-rollout: %v\n%s", err, out)
	}
}

func TestSysctlKeysExist(t *testing.T) {
	values := map[string]string{}
	for i, line := range strings.Split(read(t, "sysctl/99-vncedge.conf"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("line %d: no '=': %q", i+1, line)
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		optional := strings.HasPrefix(key, "-")
		key = strings.TrimPrefix(key, "-")
		values[key] = value
		path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if _, err := os.Stat(path); err != nil {
			if optional {
				t.Logf("optional key %s is absent here (its module is not loaded)", key)
				continue
			}
			t.Errorf("line %d: %s does not exist: %v", i+1, key, err)
		}
		for _, f := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
			if _, err := strconv.ParseUint(f, 10, 64); err != nil {
				t.Errorf("line %d: %s value %q is not numeric", i+1, key, value)
			}
		}
	}
	for _, key := range []string{
		"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
		"net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout",
		"net.core.netdev_max_backlog", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
	} {
		if values[key] == "" {
			t.Errorf("99-vncedge.conf does not set %s", key)
		}
	}
	// The unit's LimitNOFILE must fit under fs.nr_open: the file's value if
	// it sets one, else the kernel's.
	nrOpenText := values["fs.nr_open"]
	if nrOpenText == "" {
		nrOpenText = strings.TrimSpace(read(t, "/proc/sys/fs/nr_open"))
	}
	nrOpen, _ := strconv.Atoi(nrOpenText)
	limit, _ := strconv.Atoi(setting(t, "systemd/vncedge.service", "LimitNOFILE"))
	if limit > nrOpen {
		t.Errorf("LimitNOFILE %d exceeds fs.nr_open %d", limit, nrOpen)
	}
	// vncedge's own ports stay out of the ephemeral range.
	for _, p := range []string{"6080", "6089"} {
		if !strings.Contains(","+values["net.ipv4.ip_local_reserved_ports"]+",", ","+p+",") {
			t.Errorf("ip_local_reserved_ports lacks %s", p)
		}
	}
}

// TestDockerfile checks by reading what cannot be built here (no Docker).
func TestDockerfile(t *testing.T) {
	df := read(t, "container/Dockerfile")
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) < 2 {
		t.Fatal("not a multi-stage build")
	}
	final := stages[len(stages)-1][1]
	if !strings.Contains(final, "distroless/static") && final != "scratch" {
		t.Errorf("final stage %s is neither distroless/static nor scratch", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/vncedge", "EXPOSE 6080 6089", "STOPSIGNAL SIGTERM"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	user := setting(t, "container/Dockerfile", "USER")
	if strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %s is root", user)
	}
	// The binary the final stage copies is the one ENTRYPOINT runs.
	m := regexp.MustCompile(`COPY --from=build \S+ (\S+)`).FindStringSubmatch(df)
	if m == nil || !strings.Contains(df, `ENTRYPOINT ["`+m[1]+`"`) {
		t.Errorf("ENTRYPOINT does not run the copied binary")
	}
	if _, err := os.Stat("../cmd/vncedge"); err != nil {
		t.Errorf("the Dockerfile builds ./cmd/vncedge: %v", err)
	}
	if _, err := os.Stat("container/Dockerfile.dockerignore"); err != nil {
		t.Errorf("no Dockerfile.dockerignore: %v", err)
	}
}

func TestREADMEExplainsEveryFile(t *testing.T) {
	readme := read(t, "README.md")
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "README.md" || strings.HasSuffix(path, ".go") {
			return err
		}
		if !strings.Contains(readme, path) {
			t.Errorf("README.md does not mention %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
