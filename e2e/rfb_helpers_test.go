package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rootPattern is an X root window bitmap (16x16 tile) and its two colours.
type rootPattern struct {
	rows   [16][2]byte // bits are LSB first: x 0-7 in the first byte, 8-15 in the second
	fg, bg [3]int
}

func stripesPattern() rootPattern {
	var p rootPattern
	for y := range p.rows {
		p.rows[y] = [2]byte{0xff, 0x00}
	}
	p.fg, p.bg = stripeFG, stripeBG
	return p
}

func checkerPattern() rootPattern {
	var p rootPattern
	for y := range p.rows {
		if y < 8 {
			p.rows[y] = [2]byte{0xff, 0x00}
		} else {
			p.rows[y] = [2]byte{0x00, 0xff}
		}
	}
	p.fg, p.bg = checkFG, checkBG
	return p
}

// setRoot paints the root window of Xvnc's display with the pattern.
func setRoot(xsetroot, dir string, display int, name string, p rootPattern) error {
	var xbm strings.Builder
	fmt.Fprintf(&xbm, "#define %s_width 16\n#define %s_height 16\nstatic unsigned char %s_bits[] = {\n", name, name, name)
	for _, r := range p.rows {
		fmt.Fprintf(&xbm, "   0x%02x, 0x%02x,\n", r[0], r[1])
	}
	xbm.WriteString("};\n")
	file := filepath.Join(dir, name+".xbm")
	if err := os.WriteFile(file, []byte(xbm.String()), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, xsetroot, "-display", fmt.Sprintf(":%d", display), "-bitmap", file,
		"-fg", rgbHex(p.fg), "-bg", rgbHex(p.bg)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xsetroot %s: %v: %s", name, err, out)
	}
	return nil
}

// metricValue reads one series from vncedge's admin /metrics (-1 when it is not there).
func metricValue(admin, series string) (float64, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return -1, sc.Err()
}

// securityTypes reads what a VNC server offers an RFB 3.8 client, then hangs up.
func securityTypes(addr string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var ver [12]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
		return nil, err
	}
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	types := make([]byte, n[0])
	_, err = io.ReadFull(c, types)
	return types, err
}

func buildBench(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "bench")
	cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/bench")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bench: %v\n%s", err, b)
	}
	return out
}
