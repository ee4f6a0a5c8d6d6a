package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// promtool finds Prometheus's own checker (Debian package prometheus,
// which make test installs). Under CI=true its absence is a failure.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing under CI=true: apt-get install prometheus (make test does)")
		}
		t.Skip("SKIPPED: promtool is not installed (apt-get install prometheus): the rules were not loaded")
	}
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ruleExprs returns every rule's expression from a rules file's groups.
func ruleExprs(t *testing.T, groups any) []string {
	t.Helper()
	var exprs []string
	for _, g := range groups.([]any) {
		for _, r := range dig(t, g, "rules").([]any) {
			exprs = append(exprs, dig(t, r, "expr").(string))
		}
	}
	return exprs
}

// TestAlertRulesLoad loads the plain rules file and the PrometheusRule's
// groups with promtool (syntax, PromQL, templates), runs the rules' unit
// tests, and checks the two files carry the same rules.
func TestAlertRulesLoad(t *testing.T) {
	plain := yamlDocs(t, "observability/vncedge.rules.yaml")[0]
	pr := yamlDocs(t, "observability/prometheusrule.yaml")[0]
	if pr["kind"] != "PrometheusRule" || pr["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Errorf("prometheusrule.yaml is %v %v", pr["apiVersion"], pr["kind"])
	}
	if !reflect.DeepEqual(plain["groups"], dig(t, pr, "spec", "groups")) {
		t.Error("prometheusrule.yaml's spec.groups differ from vncedge.rules.yaml: edit both")
	}
	for _, g := range plain["groups"].([]any) {
		for _, r := range dig(t, g, "rules").([]any) {
			for _, k := range []string{"summary", "description"} {
				if s, _ := dig(t, r, "annotations", k).(string); s == "" {
					t.Errorf("alert %v has no %s", dig(t, r, "alert"), k)
				}
			}
			if sev := dig(t, r, "labels", "severity"); sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("alert %v severity %v", dig(t, r, "alert"), sev)
			}
		}
	}
	dir := t.TempDir()
	spec, err := yaml.Marshal(map[string]any{"groups": dig(t, pr, "spec", "groups")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "from-prometheusrule.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("observability")
	runPromtool(t, abs, "check", "rules", "vncedge.rules.yaml")
	runPromtool(t, dir, "check", "rules", "from-prometheusrule.yaml")
	runPromtool(t, abs, "test", "rules", "vncedge.rules.test.yaml")

	// The scrape config example loads too (its credentials file made here).
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := rewrite(t, "observability/prometheus.yaml", dir, "/etc/prometheus/vncedge-admin-token", token)
	if err := os.WriteFile(filepath.Join(dir, "vncedge.rules.yaml"), []byte(read(t, "observability/vncedge.rules.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "config", filepath.Base(cfg))
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name, Type string
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	GridPos    map[string]int `json:"gridPos"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(read(t, "observability/grafana-dashboard.json")))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

// dashboardExprs returns every query of the dashboard with Grafana's
// variables replaced by what they expand to, so PromQL tools can read them.
func dashboardExprs(t *testing.T, d dashboard) []string {
	t.Helper()
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$instance", ".*")
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, vars.Replace(tg.Expr))
		}
	}
	return exprs
}

// TestDashboardLoads checks the dashboard's structure as Grafana reads it
// and parses every query with promtool (as recording rules).
func TestDashboardLoads(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) < 10 {
		t.Errorf("dashboard title %q uid %q schemaVersion %d, %d panels", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" || vars["job"] != "query" {
		t.Errorf("templating %v: want datasource, job and instance variables", vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos["w"] == 0 || p.GridPos["h"] == 0 || p.GridPos["x"]+p.GridPos["w"] > 24 {
			t.Errorf("panel %q gridPos %v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries; want ${datasource} and a query", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q query ignores the instance variable: %s", p.Title, tg.Expr)
			}
		}
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range dashboardExprs(t, d) {
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %q\n", i, e)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-queries.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard-queries.yaml")
}

// TestObservabilityUsesExportedSeries checks every metric name and every
// reason the rules and the dashboard use against what the real binary
// exports, so a renamed series breaks this test instead of a dashboard.
func TestObservabilityUsesExportedSeries(t *testing.T) {
	exposition := scrape(t, runVncedge(t))
	names := map[string]bool{"up": true} // up is Prometheus's own
	labelValues := map[string]map[string]bool{}
	sample := regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? `)
	pair := regexp.MustCompile(`([a-z_]+)="([^"]*)"`)
	for _, m := range sample.FindAllStringSubmatch(exposition, -1) {
		names[m[1]] = true
		for _, p := range pair.FindAllStringSubmatch(m[2], -1) {
			if labelValues[p[1]] == nil {
				labelValues[p[1]] = map[string]bool{}
			}
			labelValues[p[1]][p[2]] = true
		}
	}
	exprs := append(ruleExprs(t, yamlDocs(t, "observability/vncedge.rules.yaml")[0]["groups"]), dashboardExprs(t, loadDashboard(t))...)
	ident := regexp.MustCompile(`\b(vncedge_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+|up)\b`)
	matcher := regexp.MustCompile(`\b(reason|direction)=~?"([^"]+)"`)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range ident.FindAllString(e, -1) {
			used[m] = true
		}
		for _, m := range matcher.FindAllStringSubmatch(e, -1) {
			for _, v := range strings.Split(m[2], "|") {
				if !labelValues[m[1]][v] {
					t.Errorf("%s=%q in %q: vncedge exports no such %s", m[1], v, e, m[1])
				}
			}
		}
	}
	var missing []string
	for n := range used {
		if !names[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the rules or the dashboard use series vncedge does not export: %v", missing)
	}
	for _, n := range []string{"vncedge_limit_max_sessions", "process_open_fds", "vncedge_upstream_dial_duration_seconds_bucket"} {
		if !used[n] {
			t.Errorf("neither the rules nor the dashboard use %s", n)
		}
	}
}
