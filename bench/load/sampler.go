package load

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"vncedge/bench/procstat"
	"vncedge/bench/promtext"
)

// sampler reads a proxy's memory, descriptors and CPU: from /proc when it is a local
// process (Pid), else from the process_* series of its /metrics (AdminURL), which is how a
// proxy on another host is watched.
type sampler struct {
	t    Target
	root string
}

func newSampler(t Target, procRoot string) sampler { return sampler{t: t, root: procRoot} }

func (s sampler) enabled() bool { return s.t.Pid > 0 || s.t.AdminURL != "" }

func (s sampler) read() (procstat.Sample, error) {
	if s.t.Pid > 0 {
		smp, err := procstat.Read(s.root, s.t.Pid)
		if err != nil {
			return smp, fmt.Errorf("proxy pid %d: %w", s.t.Pid, err)
		}
		return smp, nil
	}
	ss, err := ScrapeMetrics(s.t.AdminURL)
	if err != nil {
		return procstat.Sample{}, err
	}
	return SampleFromMetrics(ss)
}

// metricsTimeout bounds one scrape: a proxy that cannot answer its admin listener within
// it is itself a finding, not something to wait for.
const metricsTimeout = 5 * time.Second

// maxMetricsPage bounds what a scrape reads.
const maxMetricsPage = 32 << 20

// ScrapeMetrics fetches and parses ADMIN/metrics.
func ScrapeMetrics(admin string) ([]promtext.Sample, error) {
	u := strings.TrimRight(admin, "/") + "/metrics"
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if tok := os.Getenv("BENCH_ADMIN_TOKEN"); tok != "" {
		// An admin listener behind --admin-token-file wants the bearer token.
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetricsPage+1))
	if err != nil {
		return nil, fmt.Errorf("metrics: read %s: %w", u, err)
	}
	if len(b) > maxMetricsPage {
		return nil, fmt.Errorf("metrics: %s is over %d bytes", u, maxMetricsPage)
	}
	return promtext.Parse(b)
}

// SampleFromMetrics reads the process_* series every Go program with VictoriaMetrics or
// the Prometheus client exposes. CPU is required; memory and descriptors are read when there.
func SampleFromMetrics(ss []promtext.Sample) (procstat.Sample, error) {
	out := procstat.Sample{At: time.Now(), Processes: 1}
	cpu, ok := promtext.Find(ss, "process_cpu_seconds_total", nil)
	if !ok {
		return out, fmt.Errorf("metrics: no process_cpu_seconds_total")
	}
	out.CPUSeconds = cpu.Value
	if v, ok := promtext.Find(ss, "process_resident_memory_bytes", nil); ok {
		out.RSSKiB = int64(v.Value / 1024)
	}
	if v, ok := promtext.Find(ss, "process_open_fds", nil); ok {
		out.FDs = int(v.Value)
	}
	if v, ok := promtext.Find(ss, "process_max_fds", nil); ok {
		out.FDLimit = int64(v.Value)
	}
	return out, nil
}

// LookupFamily is the proxy's token lookup histogram, by source.
const LookupFamily = "vncedge_token_lookup_duration_seconds"

// LookupStats is one token source's lookups during a ramp, from the proxy's histogram.
type LookupStats struct {
	Source string  `json:"source"`
	Count  float64 `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// lookupWatch scrapes the lookup histogram before and after the ramp.
type lookupWatch struct {
	admin  string
	before []promtext.Sample
	err    error
}

func newLookupWatch(t Target) *lookupWatch { return &lookupWatch{admin: t.AdminURL} }

func (l *lookupWatch) start() {
	if l.admin != "" {
		l.before, l.err = ScrapeMetrics(l.admin)
	}
}

// finish returns each source's lookups since start, nil when there is no admin URL, and a
// note when the proxy has no such histogram or could not be read.
func (l *lookupWatch) finish() ([]LookupStats, string) {
	if l.admin == "" {
		return nil, ""
	}
	if l.err != nil {
		return nil, "token lookup figures n/a: " + l.err.Error()
	}
	after, err := ScrapeMetrics(l.admin)
	if err != nil {
		return nil, "token lookup figures n/a: " + err.Error()
	}
	return LookupsBetween(l.before, after)
}

// LookupsBetween is each source's lookups between two scrapes.
func LookupsBetween(before, after []promtext.Sample) ([]LookupStats, string) {
	sources := map[string]bool{}
	var order []string
	for _, s := range after {
		if s.Name == LookupFamily+"_bucket" && !sources[s.Label("source")] {
			sources[s.Label("source")] = true
			order = append(order, s.Label("source"))
		}
	}
	if len(order) == 0 {
		return nil, "token lookup figures n/a: the proxy's /metrics has no " + LookupFamily
	}
	var out []LookupStats
	for _, src := range order {
		m := map[string]string{"source": src}
		a, _ := promtext.Buckets(after, LookupFamily, m)
		b, _ := promtext.Buckets(before, LookupFamily, m)
		d := promtext.Sub(a, b)
		st := LookupStats{Source: src, Count: promtext.Total(d)}
		if st.Count == 0 {
			continue
		}
		st.P50Ms = 1000 * promtext.Quantile(d, 0.5)
		st.P99Ms = 1000 * promtext.Quantile(d, 0.99)
		if math.IsNaN(st.P50Ms) || math.IsNaN(st.P99Ms) {
			continue
		}
		out = append(out, st)
	}
	if len(out) == 0 {
		return nil, "token lookup figures n/a: no lookups counted in " + LookupFamily + " during the ramp"
	}
	return out, ""
}

// generatorCPU is the CPU the load generator has spent so far: its worker processes' (all
// of their life: they are started per run) and this process's since start. This
// process's children (the proxies bench starts) are not counted.
type genCPU struct {
	root  string
	self  float64
	start time.Time
}

func newGenCPU(root string) genCPU {
	g := genCPU{root: root, start: time.Now()}
	if s, err := procstat.ReadOne(root, os.Getpid()); err == nil {
		g.self = s.CPUSeconds
	}
	return g
}

// since sums the CPU of the workers behind handles and this process's since newGenCPU.
func (g genCPU) since(handles []*workerHandle) (cpu, wall float64) {
	if s, err := procstat.ReadOne(g.root, os.Getpid()); err == nil {
		cpu = s.CPUSeconds - g.self
	}
	for _, h := range handles {
		if h != nil && h.cmd != nil && h.cmd.Process != nil {
			if s, err := procstat.ReadOne(g.root, h.cmd.Process.Pid); err == nil {
				cpu += s.CPUSeconds
			}
		}
	}
	return cpu, time.Since(g.start).Seconds()
}
