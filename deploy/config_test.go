package deploy_test

import (
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// commandLineOnly says which flags a config file may not set.
func commandLineOnly(name string) bool {
	switch name {
	case "config", "check", "version", "help", "takeover":
		return true
	}
	return false
}

// knownFlags lists the flags `vncedge --help` documents.
func knownFlags(t *testing.T) map[string]bool {
	t.Helper()
	help, err := exec.Command(buildVncedge(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("vncedge --help: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`).FindAllSubmatch(help, -1) {
		flags[string(m[1])] = true
	}
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in --help", len(flags))
	}
	return flags
}

// TestExampleConfigNamesEveryFlag: deploy/systemd/vncedge.yaml says it names
// every flag a config file may set. Each key, set or commented out
// ("# key: value"), must be a flag, and each such flag must appear.
func TestExampleConfigNamesEveryFlag(t *testing.T) {
	flags := knownFlags(t)
	text := read(t, "systemd/vncedge.yaml")
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for k := range doc {
		named[k] = true
	}
	for _, m := range regexp.MustCompile(`(?m)^# ?([a-z][a-z0-9-]*): \S`).FindAllStringSubmatch(text, -1) {
		if named[m[1]] {
			t.Errorf("%s is both set and commented out", m[1])
		}
		named[m[1]] = true
	}
	for k := range named {
		if !flags[k] {
			t.Errorf("vncedge.yaml names %q, which is not a flag in vncedge --help", k)
		}
	}
	for f := range flags {
		if !commandLineOnly(f) && !named[f] {
			t.Errorf("vncedge.yaml does not name --%s: add it (commented out, with its default, if it needs no example value)", f)
		}
	}
}

// TestListenMatchesTLSFronts: the example config is for a TLS proxy on the
// same host, and deploy/tls's proxies connect to 127.0.0.1: vncedge must
// listen there (and nowhere else), trusting loopback's forwarding headers.
func TestListenMatchesTLSFronts(t *testing.T) {
	var cfg struct {
		Listen       string   `yaml:"listen"`
		TrustedProxy []string `yaml:"trusted-proxy"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "systemd/vncedge.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "127.0.0.1" {
		t.Errorf("vncedge.yaml listens on %s; the TLS fronts in deploy/tls connect to 127.0.0.1", cfg.Listen)
	}
	for _, f := range []string{"tls/haproxy.cfg", "tls/nginx.conf", "tls/traefik-dynamic.yaml"} {
		if !strings.Contains(read(t, f), cfg.Listen) {
			t.Errorf("%s does not connect to vncedge's listen address %s", f, cfg.Listen)
		}
	}
	var loopback bool
	for _, p := range cfg.TrustedProxy {
		if _, n, err := net.ParseCIDR(p); err == nil && n.Contains(net.IPv4(127, 0, 0, 1)) {
			loopback = true
		}
	}
	if !loopback {
		t.Errorf("vncedge.yaml trusted-proxy %v does not cover the proxy on 127.0.0.1", cfg.TrustedProxy)
	}
}

// TestKubernetesWiring checks what the manifests hand the container:
// forwarding headers trusted from the pod network, secrets from Secret
// volumes readable by the pod's group only, and flags that exist.
func TestKubernetesWiring(t *testing.T) {
	flags := knownFlags(t)
	var cfg struct {
		Listen       string   `yaml:"listen"`
		TokenFile    string   `yaml:"token-file"`
		TrustedProxy []string `yaml:"trusted-proxy"`
	}
	text := dig(t, kubeObject(t, "configmap.yaml", "ConfigMap", "vncedge-config"), "data", "vncedge.yaml").(string)
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedProxy) == 0 {
		t.Error("the pod's config sets no trusted-proxy: logs would name the ingress pod instead of the browser")
	}
	for _, p := range cfg.TrustedProxy {
		_, n, err := net.ParseCIDR(p)
		if err != nil || n.Contains(net.IPv4(203, 0, 113, 1)) {
			t.Errorf("trusted-proxy %q is not a private pod network", p)
		}
	}
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" {
		t.Errorf("in a pod vncedge must listen on all interfaces for the ingress, not %s", cfg.Listen)
	}

	pod := dig(t, kubeObject(t, "deployment.yaml", "Deployment", "vncedge"), "spec", "template", "spec")
	c := dig(t, pod, "containers", 0)
	if fs, rg := dig(t, pod, "securityContext", "fsGroup"), dig(t, pod, "securityContext", "runAsGroup"); fs == nil || fs != rg {
		t.Errorf("fsGroup %v must equal runAsGroup %v so 0440 Secret files are readable", fs, rg)
	}
	mounts := map[string]string{} // volume -> mount path
	for _, m := range dig(t, c, "volumeMounts").([]any) {
		mounts[dig(t, m, "name").(string)] = dig(t, m, "mountPath").(string)
	}
	secrets := map[string]string{} // volume -> secret name
	for _, v := range dig(t, pod, "volumes").([]any) {
		sec, ok := v.(map[string]any)["secret"]
		if !ok {
			continue
		}
		name := dig(t, v, "name").(string)
		secrets[name] = dig(t, sec, "secretName").(string)
		if mode := dig(t, sec, "defaultMode"); mode != 0o440 {
			t.Errorf("Secret volume %s mode %v, want 0440", name, mode)
		}
	}
	if secrets["tokens"] != "vncedge-tokens" || mounts["tokens"] != cfg.TokenFile {
		t.Errorf("token-file %s must be the vncedge-tokens Secret's mount (volumes %v, mounts %v)", cfg.TokenFile, secrets, mounts)
	}
	args := dig(t, c, "args").([]any)
	for i, a := range args {
		s := a.(string)
		if !strings.HasPrefix(s, "--") {
			continue
		}
		name := strings.TrimPrefix(s, "--")
		switch {
		case flags[name]:
		default:
			t.Errorf("deployment args use --%s, which vncedge --help does not list", name)
		}
		if name == "admin-token-file" {
			if i+1 >= len(args) || secrets["admin-token"] == "" || !strings.HasPrefix(args[i+1].(string), mounts["admin-token"]+"/") {
				t.Errorf("--admin-token-file must name a file in the admin-token Secret volume (mounted at %s)", mounts["admin-token"])
			}
		}
	}
	// Prometheus scrapes with the same token.
	sm := kubeObject(t, "servicemonitor.yaml", "ServiceMonitor", "vncedge")
	if dig(t, sm, "spec", "endpoints", 0, "authorization", "credentials", "name") != secrets["admin-token"] {
		t.Errorf("the ServiceMonitor does not send the admin token from Secret %s", secrets["admin-token"])
	}
	// Redis: the URL (with its password) only from a Secret (redis_test.go
	// checks the wiring in full).
	dep := read(t, "kubernetes/deployment.yaml")
	for _, want := range []string{"- --token-redis\n", "secretKeyRef:", "name: vncedge-redis"} {
		if !strings.Contains(dep, want) {
			t.Errorf("deployment.yaml lacks the Redis line %q", want)
		}
	}
	if strings.Contains(text, "token-redis") {
		t.Error("the ConfigMap must not carry the Redis URL (it holds the password)")
	}
}
