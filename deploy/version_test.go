package deploy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The version and commit the test binary is stamped with: unlike anything
// git describe could print, so a match proves the stamp went through.
const (
	testVersion = "v9.8.7-3-gtest-dirty"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

// makeVars runs make in the repository root and returns its output: the
// tests read the Makefile's own answers instead of copying its rules.
func makeVars(args ...string) (string, error) {
	cmd := exec.Command("make", append([]string{"-s", "--no-print-directory"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// makeLDFlags is the -ldflags value `make build` uses for a version.
func makeLDFlags(version, commit string) (string, error) {
	return makeVars("print-ldflags", "VERSION="+version, "COMMIT="+commit)
}

// TestVersionStamped checks that the Makefile's LDFLAGS reach the binary:
// --version names the version, the commit and the Go toolchain.
func TestVersionStamped(t *testing.T) {
	out, err := exec.Command(buildVncedge(t), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("vncedge --version: %v\n%s", err, out)
	}
	want := fmt.Sprintf("vncedge %s (commit %s, %s)\n", testVersion, testCommit, runtime.Version())
	if string(out) != want {
		t.Errorf("vncedge --version = %q, want %q", out, want)
	}
	// Without an explicit VERSION, the Makefile asks git.
	v, err := makeVars("print-version")
	if err != nil {
		t.Fatal(err)
	}
	if desc, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		if got := strings.TrimSpace(string(desc)); got != v {
			t.Errorf("make print-version = %q, git describe = %q", v, got)
		}
	}
}

// TestImageTagsAgree checks the three places a version is named: the
// Makefile's build, the container build and the Kubernetes image tag.
func TestImageTagsAgree(t *testing.T) {
	const v, c = "v1.2.3-test", "fedcba9876543210fedcba9876543210fedcba98"
	ldflags, err := makeLDFlags(v, c)
	if err != nil {
		t.Fatal(err)
	}
	// The Dockerfile stamps the same -X flags from its build arguments.
	df := read(t, "container/Dockerfile")
	dockerFlags := strings.NewReplacer(v, "${VERSION}", c, "${COMMIT}").Replace(ldflags)
	if !strings.Contains(df, dockerFlags) {
		t.Errorf("Dockerfile does not stamp %q (the Makefile's LDFLAGS)", dockerFlags)
	}
	for _, arg := range []string{"ARG VERSION", "ARG COMMIT"} {
		if !strings.Contains(df, arg) {
			t.Errorf("Dockerfile lacks %s", arg)
		}
	}
	// make image passes them and tags the image with the version.
	recipe, err := makeVars("-n", "image", "VERSION="+v, "COMMIT="+c)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`-t (\S+):` + regexp.QuoteMeta(v) + `\b`).FindStringSubmatch(recipe)
	if m == nil || !strings.Contains(recipe, "--build-arg VERSION="+v) || !strings.Contains(recipe, "--build-arg COMMIT="+c) {
		t.Fatalf("make image does not build-arg the version and tag the image with it:\n%s", recipe)
	}
	image := m[1]

	// The Deployment names that image, and kustomization.yaml's images:
	// entry, which make k8s-image sets, gives it the tag.
	dep := kubeObject(t, "deployment.yaml", "Deployment", "vncedge")
	if got := dig(t, dep, "spec", "template", "spec", "containers", 0, "image"); got != image {
		t.Errorf("deployment.yaml image %v, want %s (tag from kustomization.yaml)", got, image)
	}
	dir := t.TempDir()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(read(t, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kust := filepath.Join(dir, "kustomization.yaml")
	if _, err := makeVars("k8s-image", "VERSION="+v, "KUSTOMIZATION="+kust); err != nil {
		t.Fatal(err)
	}
	var tagged bool
	for _, img := range dig(t, yamlDocs(t, kust)[0], "images").([]any) {
		if dig(t, img, "name") == image {
			tagged = dig(t, img, "newTag") == v
		}
	}
	if !tagged {
		t.Errorf("after make k8s-image VERSION=%s, kustomization.yaml does not tag %s with it:\n%s", v, image, read(t, kust))
	}
	// When kubectl is here, render the real thing.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "image: "+image+":"+v+"\n") {
			t.Errorf("kubectl kustomize does not render image %s:%s", image, v)
		}
	} else {
		t.Log("kubectl not installed: the rendered manifests were not checked")
	}

	// A kustomization without the images: entry, or none at all, makes the
	// target fail instead of leaving an old tag in place.
	if err := os.WriteFile(kust, []byte("resources: [deployment.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{kust, filepath.Join(dir, "none.yaml")} {
		if _, err := makeVars("k8s-image", "VERSION="+v, "KUSTOMIZATION="+f); err == nil {
			t.Errorf("make k8s-image succeeded on %s, which has no images: entry", f)
		}
	}
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runVncedge starts the built binary and stops it (SIGTERM, bounded) at
// the end of the test. It returns the admin address.
func runVncedge(t *testing.T, args ...string) string {
	t.Helper()
	admin := freePort(t)
	cmd := exec.Command(buildVncedge(t), append([]string{"--listen", "127.0.0.1:0", "--admin", admin, "--drain-timeout", "0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		logs <- b.String()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vncedge exited: %v\n%s", err, <-logs)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("vncedge did not stop within 15 s of SIGTERM")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return admin
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vncedge not ready on %s within 10 s: %v", admin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scrape fetches /metrics from an admin address.
func scrape(t *testing.T, admin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(b)
}

// TestBinaryMetricsCarryBuildAndMetadata scrapes the real binary: the
// program turns on HELP/TYPE lines (a process-wide switch that only main
// sets) and names its build.
func TestBinaryMetricsCarryBuildAndMetadata(t *testing.T) {
	admin := runVncedge(t, "--max-sessions", "4321")
	text := scrape(t, admin)
	want := fmt.Sprintf(`vncedge_build_info{version=%q,commit=%q,go=%q} 1`, testVersion, testCommit, runtime.Version())
	if !strings.Contains(text, want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}
	for _, line := range []string{
		"# TYPE vncedge_sessions_active gauge",
		"# TYPE vncedge_sessions_opened_total counter",
		"# TYPE vncedge_session_duration_seconds histogram",
		"# TYPE vncedge_build_info gauge",
		"vncedge_limit_max_sessions 4321",
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !regexp.MustCompile(`(?m)^# HELP vncedge_sessions_active \S`).MatchString(text) {
		t.Error("/metrics has no HELP text for vncedge_sessions_active")
	}
}
