package routing

import (
	"strings"
	"testing"
)

func BenchmarkClassify(b *testing.B) {
	r := newRouter(b, Config{
		Allow:   []string{"192.168.0.0/16:5901,5902", "[fd00::/8]:5901"},
		Sources: []TokenSource{&mapSource{name: "m"}},
	})
	for _, uri := range []string{
		"/vnc/192.168.100.3:5901",
		"/vnc/%5Bfd00::1%5D:5901",
		"/websockify?token=0123456789abcdef0123456789abcdef",
		"/websockify?autoconnect=1&path=x&token=0123456789abcdef0123456789abcdef&resize=scale",
		"/vnc/10.0.0.1:5901",
	} {
		name := strings.NewReplacer("/", "_", "?", "_").Replace(uri)
		b.Run(name[:min(len(name), 40)], func(b *testing.B) {
			buf := []byte(uri)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = r.Classify(buf)
			}
		})
	}
}
