package promtext

import (
	"math"
	"strings"
	"testing"
)

const page = `# HELP process_cpu_seconds_total Total user and system CPU time.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 3.2e+07
process_open_fds 42
vncedge_sessions_total{result="ok"} 7
vncedge_token_lookup_duration_seconds_bucket{source="redis",le="0.001"} 10
vncedge_token_lookup_duration_seconds_bucket{source="redis",le="0.01"} 90
vncedge_token_lookup_duration_seconds_bucket{source="redis",le="+Inf"} 100
vncedge_token_lookup_duration_seconds_bucket{source="http",le="0.001"} 1
vncedge_token_lookup_duration_seconds_bucket{source="http",le="+Inf"} 1
vncedge_token_lookup_duration_seconds_sum{source="redis"} 0.5
vncedge_x_bucket{vmrange="1.000e-03...1.136e-03"} 3
vncedge_x_bucket{vmrange="8.799e-04...1.000e-03"} 1
escaped{a="q\"uote\\",b="x"} 1 1700000000000
`

func TestParseAndFind(t *testing.T) {
	ss, err := Parse([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := Find(ss, "process_cpu_seconds_total", nil); !ok || s.Value != 12.5 {
		t.Fatalf("cpu: %+v %v", s, ok)
	}
	if s, ok := Find(ss, "process_resident_memory_bytes", nil); !ok || s.Value != 32e6 {
		t.Fatalf("rss: %+v", s)
	}
	if s, ok := Find(ss, "escaped", map[string]string{"b": "x"}); !ok || s.Label("a") != `q"uote\` {
		t.Fatalf("escaped: %+v", s)
	}
	if _, ok := Find(ss, "vncedge_sessions_total", map[string]string{"result": "no"}); ok {
		t.Fatal("label mismatch found")
	}
}

func TestBucketsAndQuantile(t *testing.T) {
	ss, err := Parse([]byte(page))
	if err != nil {
		t.Fatal(err)
	}
	bs, ok := Buckets(ss, "vncedge_token_lookup_duration_seconds", map[string]string{"source": "redis"})
	if !ok || len(bs) != 3 || Total(bs) != 100 {
		t.Fatalf("redis buckets %+v", bs)
	}
	// p50: rank 50 lies in (0.001, 0.01] holding 80 observations; 40 of them in.
	if q := Quantile(bs, 0.5); math.Abs(q-(0.001+0.009*40/80)) > 1e-12 {
		t.Fatalf("p50 = %v", q)
	}
	// p99 lies in the +Inf bucket: the highest finite bound stands in.
	if q := Quantile(bs, 0.99); q != 0.01 {
		t.Fatalf("p99 = %v", q)
	}
	vm, ok := Buckets(ss, "vncedge_x", nil)
	if !ok || len(vm) != 2 || vm[0].UpTo != 1e-3 || vm[1].Count != 4 {
		t.Fatalf("vmrange buckets %+v", vm)
	}
	if _, ok := Buckets(ss, "nothing", nil); ok {
		t.Fatal("buckets of a missing family")
	}
	if !math.IsNaN(Quantile(nil, 0.5)) || !math.IsNaN(Quantile([]Bucket{{1, 0}}, 0.5)) {
		t.Fatal("quantile of no observations is not NaN")
	}
	d := Sub([]Bucket{{1, 10}, {2, 30}}, []Bucket{{1, 4}, {2, 5}})
	if d[0].Count != 6 || d[1].Count != 25 {
		t.Fatalf("Sub = %+v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"name_only",
		"1bad 2",
		`x{a=1} 2`,
		`x{a="1" 2`,
		`x{a="1"} two`,
		`x 1 2 3`,
		"x " + strings.Repeat("9", MaxLine),
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%.40q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(page))
	f.Add([]byte(`x{a="\"",b=""} NaN`))
	f.Add([]byte("x{} +Inf\n# c\n\ny -Inf 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := Parse(b)
		if err != nil {
			return
		}
		for _, s := range ss {
			if !validName(s.Name) {
				t.Fatalf("accepted bad name %q", s.Name)
			}
		}
		bs, _ := Buckets(ss, "x", nil)
		q := Quantile(bs, 0.99)
		if !math.IsNaN(q) && len(bs) > 0 && q > bs[len(bs)-1].UpTo && !math.IsInf(bs[len(bs)-1].UpTo, 1) {
			t.Fatalf("quantile %v above the top bound %v", q, bs[len(bs)-1].UpTo)
		}
	})
}
