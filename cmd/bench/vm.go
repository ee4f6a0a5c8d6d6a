package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"vncedge/bench/vncsim"
)

// listFlag is a repeatable string flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runVM(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench vm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listen listFlag
	fs.Var(&listen, "listen", "`ADDR` to serve on (repeatable or comma-separated; default 127.0.0.1:5901)")
	mode := fs.String("mode", "desktop", "what to do after the RFB handshake: desktop, echo, sink or source")
	wsMode := fs.Bool("ws", false, "accept WebSocket upgrades and speak RFB inside binary frames (no proxy needed)")
	width := fs.Int("width", 1024, "framebuffer width")
	height := fs.Int("height", 768, "framebuffer height")
	name := fs.String("name", "vncsim", "desktop name")
	password := fs.String("password", "", "offer VNC authentication with this password instead of None")
	sourceBytes := fs.Int64("source-bytes", 0, "source mode: close each session after this many bytes (0: never)")
	frameInterval := fs.Duration("frame-interval", 0, "least time between incremental updates (0: 40ms; negative: none)")
	replay := fs.String("replay", "", "serve this FBS recording (`FILE`, e.g. from vncedge --record) instead of a simulated desktop")
	replayFast := fs.Bool("replay-fast", false, "with --replay: send the recording as fast as possible, not with its recorded timing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(listen) == 0 {
		listen = listFlag{"127.0.0.1:5901"}
	}
	m, err := vncsim.ParseMode(*mode)
	if err != nil {
		return err
	}
	if *replay != "" {
		m = vncsim.ModeReplay
	}
	cfg := vncsim.Config{Mode: m, Width: *width, Height: *height, Name: *name, Password: *password,
		SourceBytes: *sourceBytes, WebSocket: *wsMode, FrameInterval: *frameInterval,
		ReplayFile: *replay, ReplayFast: *replayFast}
	var servers []*vncsim.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	proto := "rfb"
	if *wsMode {
		proto = "ws"
	}
	for _, addr := range listen {
		s, err := vncsim.Listen(addr, cfg)
		if err != nil {
			return err
		}
		servers = append(servers, s)
		fmt.Fprintf(stdout, "vncsim: %s %s on %s (%dx%d)\n", m, proto, s.Addr(), s.Config().Width, s.Config().Height)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	signal.Stop(sig)
	for _, s := range servers {
		st := s.Stats()
		fmt.Fprintf(stdout, "vncsim %s: %d sessions, %d bytes in, %d out, %d keys, %d pointer events\n",
			s.Addr(), st.SessionsTotal, st.BytesIn, st.BytesOut, st.KeyEvents, st.PointerEvents)
	}
	return nil
}
