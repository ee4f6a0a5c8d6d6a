package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"

	"vncedge/bench/load"
)

// A small hand-written SVG plotter: two chart shapes are all the report needs, and a
// plotting library would bring far more than that.

var palette = []string{"#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#76b7b2", "#b07aa1", "#9c755f", "#bab0ac"}

const (
	width, height            = 760, 420
	left, right, top, bottom = 70, 20, 40, 110
)

type group struct {
	label  string
	values []float64
}

type chart struct {
	title, yLabel string
	series        []string
	groups        []group
}

type line struct {
	name   string
	points [][2]float64
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func header(b *bytes.Buffer, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="24" font-size="16" text-anchor="middle">%s</text>`+"\n", width/2, esc(title))
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func yAxis(b *bytes.Buffer, ymax float64, label string) {
	ph := float64(height - top - bottom)
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		y := float64(height-bottom) - ph*float64(i)/5
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-right, y, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, esc(load.Num(v)))
	}
	fmt.Fprintf(b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+(height-top-bottom)/2, esc(label))
}

// legend lays the series names out in rows under the plot.
func legend(b *bytes.Buffer, names []string) {
	x, y := left, height-50
	for i, n := range names {
		w := 24 + 7*len(n)
		if x+w > width-right && x > left {
			x, y = left, y+18
		}
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`, x, y-10, palette[i%len(palette)])
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x+16, y, esc(n))
		x += w
	}
}

// label writes a group label under the axis, one line per comma-separated part.
func label(b *bytes.Buffer, x float64, text string) {
	for i, part := range strings.Split(text, ", ") {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="11">%s</text>`+"\n", x, height-bottom+16+14*i, esc(part))
	}
}

func (c chart) bars() []byte {
	var b bytes.Buffer
	header(&b, c.title)
	var ymax float64
	for _, g := range c.groups {
		for _, v := range g.values {
			ymax = math.Max(ymax, v)
		}
	}
	ymax = niceMax(ymax)
	yAxis(&b, ymax, c.yLabel)
	pw := float64(width - left - right)
	ph := float64(height - top - bottom)
	gw := pw / float64(len(c.groups))
	bw := gw * 0.8 / float64(max(1, len(c.series)))
	for gi, g := range c.groups {
		x0 := float64(left) + gw*float64(gi) + gw*0.1
		for si, v := range g.values {
			h := ph * v / ymax
			x := x0 + bw*float64(si)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`+"\n",
				x, float64(height-bottom)-h, bw*0.95, h, palette[si%len(palette)], esc(c.series[si]), esc(load.Num(v)))
			if v > 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n",
					x+bw/2, float64(height-bottom)-h-3, esc(load.Num(v)))
			}
		}
		label(&b, float64(left)+gw*(float64(gi)+0.5), g.label)
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>`+"\n", left, width-right, height-bottom, height-bottom)
	legend(&b, c.series)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func lineChart(title, xLabel, yLabel string, ls []line, logX bool) []byte {
	var b bytes.Buffer
	header(&b, title)
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, l := range ls {
		for _, p := range l.points {
			xmin, xmax, ymax = math.Min(xmin, p[0]), math.Max(xmax, p[0]), math.Max(ymax, p[1])
		}
	}
	if logX {
		xmin = math.Max(xmin, 1e-3)
	} else {
		xmin = 0
	}
	if xmax <= xmin {
		xmax = xmin*10 + 1
	}
	ymax = niceMax(ymax)
	yAxis(&b, ymax, yLabel)
	pw := float64(width - left - right)
	ph := float64(height - top - bottom)
	xpos := func(x float64) float64 {
		if logX {
			return float64(left) + pw*(math.Log10(math.Max(x, xmin))-math.Log10(xmin))/(math.Log10(xmax)-math.Log10(xmin))
		}
		return float64(left) + pw*(x-xmin)/(xmax-xmin)
	}
	// X ticks: decades on a log axis, five steps otherwise.
	var ticks []float64
	if logX {
		for d := math.Pow(10, math.Floor(math.Log10(xmin))); d <= xmax*1.0001; d *= 10 {
			if d >= xmin {
				ticks = append(ticks, d)
			}
		}
	} else {
		for i := 0; i <= 5; i++ {
			ticks = append(ticks, xmin+(xmax-xmin)*float64(i)/5)
		}
	}
	for _, t := range ticks {
		x := xpos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>`+"\n", x, x, top, height-bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, height-bottom+16, esc(load.Num(t)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", left+int(pw)/2, height-bottom+36, esc(xLabel))
	var names []string
	for i, l := range ls {
		names = append(names, l.name)
		var pts bytes.Buffer
		for _, p := range l.points {
			fmt.Fprintf(&pts, "%.1f,%.1f ", xpos(p[0]), float64(height-bottom)-ph*p[1]/ymax)
		}
		col := palette[i%len(palette)]
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, bytes.TrimSpace(pts.Bytes()))
		for _, p := range l.points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				xpos(p[0]), float64(height-bottom)-ph*p[1]/ymax, col, esc(l.name), esc(load.Num(p[0])), esc(load.Num(p[1])))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="black"/>`+"\n", left, width-right, height-bottom, height-bottom)
	legend(&b, names)
	b.WriteString("</svg>\n")
	return b.Bytes()
}
