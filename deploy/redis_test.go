package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Kubernetes token store: vncedge's pods read the Redis URL from the
// vncedge-redis Secret, and kubernetes/redis/ is an example Redis for it.

// redisObject returns an object of the example Redis.
func redisObject(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	return kubeObject(t, "redis/redis.yaml", kind, name)
}

// labelsMatch reports whether every selector label is among labels.
func labelsMatch(selector, labels any) bool {
	s, ok1 := selector.(map[string]any)
	l, ok2 := labels.(map[string]any)
	if !ok1 || !ok2 || len(s) == 0 {
		return false
	}
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

// secretCommand reads the documented `kubectl create secret generic
// vncedge-redis` command from deployment.yaml's comments: its url and
// requirepass.conf literals, with $PASS standing for the password.
func secretCommand(t *testing.T) (url, requirepass string) {
	t.Helper()
	dep := read(t, "kubernetes/deployment.yaml")
	if !strings.Contains(dep, "create secret generic vncedge-redis") {
		t.Fatal("deployment.yaml does not say how to create the vncedge-redis Secret")
	}
	u := regexp.MustCompile(`--from-literal=url="([^"]+)"`).FindStringSubmatch(dep)
	p := regexp.MustCompile(`--from-literal=requirepass\.conf="([^"]+)"`).FindStringSubmatch(dep)
	if u == nil || p == nil {
		t.Fatal("deployment.yaml's vncedge-redis command lacks the url or requirepass.conf literal")
	}
	return u[1], p[1]
}

// TestKubernetesRedisWiring follows the Redis URL from the Secret into
// vncedge's arguments, and checks that the example Redis, its Service, the
// documented Secret and both NetworkPolicies fit together.
func TestKubernetesRedisWiring(t *testing.T) {
	pod := dig(t, kubeObject(t, "deployment.yaml", "Deployment", "vncedge"), "spec", "template", "spec")
	c := dig(t, pod, "containers", 0)
	var args []string
	for _, a := range dig(t, c, "args").([]any) {
		args = append(args, a.(string))
	}
	value := func(flag string) string {
		i := slices.Index(args, flag)
		if i < 0 || i+1 >= len(args) {
			t.Errorf("deployment args lack %s", flag)
			return ""
		}
		return args[i+1]
	}
	m := regexp.MustCompile(`^\$\(([A-Z_][A-Z0-9_]*)\)$`).FindStringSubmatch(value("--token-redis"))
	if m == nil {
		t.Fatalf("--token-redis must be $(VAR), an environment variable from a Secret, not %q", value("--token-redis"))
	}
	var fromSecret bool
	for _, e := range dig(t, c, "env").([]any) {
		if dig(t, e, "name") == m[1] {
			ref := dig(t, e, "valueFrom", "secretKeyRef")
			fromSecret = dig(t, ref, "name") == "vncedge-redis" && dig(t, ref, "key") == "url"
		}
	}
	if !fromSecret {
		t.Errorf("%s must come from Secret vncedge-redis, key url", m[1])
	}
	if ch := value("--token-redis-revoke-channel"); ch == "" || strings.HasPrefix(ch, "-") {
		t.Errorf("--token-redis-revoke-channel names no channel: %q", ch)
	}

	// The documented URL names the example's Service, in this namespace,
	// on its port.
	url, requirepass := secretCommand(t)
	svc := redisObject(t, "Service", "vncedge-redis")
	ns := dig(t, yamlDocs(t, "kubernetes/kustomization.yaml")[0], "namespace")
	port := dig(t, svc, "spec", "ports", 0, "port").(int)
	if host := fmt.Sprintf("@%s.%s.svc:%d/", dig(t, svc, "metadata", "name"), ns, port); !strings.Contains(url, host) {
		t.Errorf("the documented URL %s does not reach the example's Service (%s)", url, host)
	}
	if !strings.HasPrefix(url, "redis://:$PASS@") || requirepass != "requirepass $PASS" {
		t.Errorf("the URL (%s) and requirepass.conf (%s) must carry the same password", url, requirepass)
	}

	// The Redis pod: its Service selects it, its password comes from the
	// Secret's requirepass.conf key, where redis.conf includes it from.
	rdep := redisObject(t, "Deployment", "vncedge-redis")
	rpod := dig(t, rdep, "spec", "template", "spec")
	rlabels := dig(t, rdep, "spec", "template", "metadata", "labels")
	if !labelsMatch(dig(t, svc, "spec", "selector"), rlabels) {
		t.Error("the vncedge-redis Service does not select the Redis pod")
	}
	rc := dig(t, rpod, "containers", 0)
	if got := dig(t, rc, "ports", 0, "containerPort"); got != port {
		t.Errorf("Redis listens on %v, its Service sends to %d", got, port)
	}
	mounts := map[string]string{}
	for _, mt := range dig(t, rc, "volumeMounts").([]any) {
		mounts[dig(t, mt, "name").(string)] = dig(t, mt, "mountPath").(string)
	}
	conf := dig(t, redisObject(t, "ConfigMap", "vncedge-redis-config"), "data", "redis.conf").(string)
	for _, v := range dig(t, rpod, "volumes").([]any) {
		sec, ok := v.(map[string]any)["secret"]
		if !ok {
			continue
		}
		if dig(t, sec, "secretName") != "vncedge-redis" || dig(t, sec, "defaultMode") != 0o440 {
			t.Errorf("Redis's Secret volume: %v, want vncedge-redis, mode 0440", sec)
		}
		path := mounts[dig(t, v, "name").(string)] + "/" + dig(t, sec, "items", 0, "path").(string)
		if dig(t, sec, "items", 0, "key") != "requirepass.conf" || !strings.Contains(conf, "include "+path+"\n") {
			t.Errorf("redis.conf must include the Secret's requirepass.conf, mounted at %s", path)
		}
	}
	cmd := dig(t, rc, "command").([]any)
	if cfgMount := mounts["config"]; len(cmd) != 2 || cmd[1] != cfgMount+"/redis.conf" {
		t.Errorf("Redis runs %v, not the redis.conf mounted at %s", cmd, cfgMount)
	}
	for _, dir := range mounts {
		for _, other := range mounts {
			if dir != other && strings.HasPrefix(other, dir+"/") {
				t.Errorf("mount %s lies inside mount %s (a read-only volume cannot take a mount point)", other, dir)
			}
		}
	}
	// The namespace enforces the restricted profile: Redis must meet it too.
	if dig(t, rpod, "securityContext", "runAsNonRoot") != true ||
		dig(t, rpod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" ||
		dig(t, rc, "securityContext", "allowPrivilegeEscalation") != false ||
		fmt.Sprint(dig(t, rc, "securityContext", "capabilities", "drop")) != "[ALL]" {
		t.Error("the Redis pod does not meet the restricted Pod Security profile")
	}

	// vncedge may connect to Redis, and Redis admits vncedge.
	vlabels := dig(t, kubeObject(t, "deployment.yaml", "Deployment", "vncedge"), "spec", "template", "metadata", "labels")
	var egress bool
	for _, rule := range dig(t, kubeObject(t, "networkpolicy.yaml", "NetworkPolicy", "vncedge"), "spec", "egress").([]any) {
		for _, to := range dig(t, rule, "to").([]any) {
			sel, ok := to.(map[string]any)["podSelector"]
			if ok && labelsMatch(dig(t, sel, "matchLabels"), rlabels) && dig(t, rule, "ports", 0, "port") == port {
				egress = true
			}
		}
	}
	if !egress {
		t.Error("vncedge's NetworkPolicy does not let it reach the Redis pod's port")
	}
	var ingress bool
	rnp := redisObject(t, "NetworkPolicy", "vncedge-redis")
	if !labelsMatch(dig(t, rnp, "spec", "podSelector", "matchLabels"), rlabels) {
		t.Error("the Redis NetworkPolicy does not select the Redis pod")
	}
	for _, rule := range dig(t, rnp, "spec", "ingress").([]any) {
		for _, from := range dig(t, rule, "from").([]any) {
			sel, ok := from.(map[string]any)["podSelector"]
			if ok && labelsMatch(dig(t, sel, "matchLabels"), vlabels) && dig(t, rule, "ports", 0, "port") == port {
				ingress = true
			}
		}
	}
	if !ingress {
		t.Error("the Redis NetworkPolicy does not admit the vncedge pods")
	}

	// The example is applied on its own, into vncedge's namespace.
	k := yamlDocs(t, "kubernetes/redis/kustomization.yaml")[0]
	if dig(t, k, "namespace") != ns || fmt.Sprint(dig(t, k, "resources")) != "[redis.yaml]" {
		t.Errorf("redis/kustomization.yaml: namespace %v, resources %v", dig(t, k, "namespace"), dig(t, k, "resources"))
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		for _, dir := range []string{"kubernetes", "kubernetes/redis"} {
			if out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput(); err != nil {
				t.Errorf("kubectl kustomize %s: %v\n%s", dir, err, out)
			}
		}
	}
}

// TestExampleRedisRuns starts the real redis-server on the example's
// redis.conf (only the address, the data directory and the include path
// moved here) with a password file made as deployment.yaml documents, and
// checks what vncedge relies on: the password is required, keyspace
// notifications deliver deletions and expiries, tokens are never evicted,
// and vncedge --check, with the pod's arguments and the documented URL,
// reaches it.
func TestExampleRedisRuns(t *testing.T) {
	redisServer := lookTool(t, "redis-server")
	dir := t.TempDir()
	url, requirepass := secretCommand(t)
	const password = "deploy-test-redis-password"
	passFile := filepath.Join(dir, "requirepass.conf")
	if err := os.WriteFile(passFile, []byte(strings.ReplaceAll(requirepass, "$PASS", password)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeLoopbackPort(t)
	conf := dig(t, redisObject(t, "ConfigMap", "vncedge-redis-config"), "data", "redis.conf").(string)
	for _, r := range [][2]string{
		{"bind 0.0.0.0\n", "bind 127.0.0.1\n"},
		{"port 6379\n", fmt.Sprintf("port %d\n", port)},
		{"dir /data\n", "dir " + dir + "\n"},
		{"include /etc/redis/secret/requirepass.conf\n", "include " + passFile + "\n"},
	} {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("redis.conf no longer has %q; update this test", r[0])
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	confFile := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(redisServer, confFile)
	var out strings.Builder
	srv.Stdout, srv.Stderr = &out, &out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("redis-server did not exit after kill")
		}
		if t.Failed() {
			t.Logf("redis-server output:\n%s", out.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx).Err() != nil {
		select {
		case err := <-done:
			t.Fatalf("redis-server exited on the example's redis.conf: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer within 10s on the example's redis.conf\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Without the password: refused.
	anon := redis.NewClient(&redis.Options{Addr: addr})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without the password: %v, want NOAUTH", err)
	}
	got := func(key string) string {
		v, err := c.ConfigGet(ctx, key).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", key, err)
		}
		return v[key]
	}
	if ev := got("notify-keyspace-events"); !strings.Contains(ev, "K") ||
		!(strings.Contains(ev, "A") || strings.Contains(ev, "g") && strings.Contains(ev, "x")) {
		t.Errorf("notify-keyspace-events %q: deleted or expired token keys would not end their sessions (want K with g and x)", ev)
	}
	if p := got("maxmemory-policy"); p != "noeviction" {
		t.Errorf("maxmemory-policy %q: a full store would drop tokens", p)
	}
	if a := got("appendonly"); a != "yes" {
		t.Errorf("appendonly %q: tokens would not outlive a restart", a)
	}
	// A deleted key is announced where vncedge listens.
	sub := c.PSubscribe(ctx, "__keyspace@0__:*")
	defer sub.Close()
	if _, err := sub.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "tok", "10.20.0.5:5901", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, "tok").Err(); err != nil {
		t.Fatal(err)
	}
	var events []string
	for !slices.Contains(events, "del") {
		msg, err := sub.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("no keyspace event for a deleted key (got %v): %v", events, err)
		}
		if m, ok := msg.(*redis.Message); ok {
			events = append(events, m.Payload)
		}
	}

	// vncedge's own arguments, as the pod passes them, reach this Redis.
	pod := dig(t, kubeObject(t, "deployment.yaml", "Deployment", "vncedge"), "spec", "template", "spec")
	var redisArgs []string
	args := dig(t, pod, "containers", 0, "args").([]any)
	for i := 0; i < len(args); i++ {
		if a := args[i].(string); strings.HasPrefix(a, "--token-redis") && i+1 < len(args) {
			redisArgs = append(redisArgs, a, args[i+1].(string))
			i++
		}
	}
	local := regexp.MustCompile(`@[^/]+/`).ReplaceAllString(strings.ReplaceAll(url, "$PASS", password), "@"+addr+"/")
	for i, a := range redisArgs {
		if strings.HasPrefix(a, "$(") {
			redisArgs[i] = local
		}
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("vm1: 10.20.0.5:5901\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := exec.Command(buildVncedge(t), append([]string{"--token-file", tokens, "--check"}, redisArgs...)...)
	b, err := check.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "configuration OK") || strings.Contains(string(b), "not reachable") {
		t.Errorf("vncedge --check %v: %v\n%s", redactArgs(redisArgs, password), err, b)
	}
	if strings.Contains(string(b), password) {
		t.Error("vncedge --check printed the Redis password")
	}
}

// redactArgs hides the password in a failure message.
func redactArgs(args []string, password string) []string {
	out := slices.Clone(args)
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], password, "xxx")
	}
	return out
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
