package deploy_test

import (
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestAdminPortAgrees reads the admin listener's default port from
// `vncedge --help` and checks that every file that names the admin port
// uses it, so moving the default can never leave a probe or a firewall
// rule on the old one.
func TestAdminPortAgrees(t *testing.T) {
	help, err := exec.Command(buildVncedge(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("vncedge --help: %v", err)
	}
	m := regexp.MustCompile(`--admin ADDR\n(?:      .*\n)*?      Default: (\S+)\n`).FindSubmatch(help)
	if m == nil {
		t.Fatalf("no --admin default in --help:\n%s", help)
	}
	_, port, err := net.SplitHostPort(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if port == "9090" {
		t.Fatal("the admin port default is Prometheus's own 9090")
	}
	for _, c := range []struct{ file, want string }{
		{"container/Dockerfile", "EXPOSE 6080 " + port + "\n"},
		{"container/Dockerfile", `"--admin", "0.0.0.0:` + port + `"`},
		{"systemd/vncedge.yaml", "admin: 127.0.0.1:" + port + "\n"},
		{"tls/haproxy.cfg", "check port " + port + " "},
		{"tls/traefik-dynamic.yaml", "port: " + port + "\n"},
		{"kubernetes/service.yaml", "port: " + port + "\n"},
		{"kubernetes/networkpolicy.yaml", "port: " + port + "\n"},
		{"kubernetes/deployment.yaml", "containerPort: " + port + "\n"},
		{"../Makefile", "DEMO_ADMIN ?= 127.0.0.1:" + port + "\n"},
		{"../README.md", "127.0.0.1:" + port},
		{"../docs/reference.md", "127.0.0.1:" + port},
	} {
		if !strings.Contains(read(t, c.file), c.want) {
			t.Errorf("%s does not contain %q (the admin port is %s)", c.file, c.want, port)
		}
	}
	for _, f := range []string{"container/Dockerfile", "systemd/vncedge.yaml", "systemd/vncedge.service", "tls/haproxy.cfg",
		"tls/traefik-dynamic.yaml", "kubernetes/configmap.yaml", "kubernetes/deployment.yaml", "kubernetes/service.yaml",
		"kubernetes/networkpolicy.yaml", "sysctl/99-vncedge.conf", "README.md"} {
		if strings.Contains(read(t, f), "9090") {
			t.Errorf("%s still names port 9090", f)
		}
	}
}
