package tokensrc

import (
	"context"
	"errors"
	"fmt"
	"os"

	"vncedge/bench/load"
)

// RunOptions describe a token-source comparison.
type RunOptions struct {
	// Vncedge is the proxy binary; a fresh one runs per source, with only that source.
	Vncedge string
	// Sources in order (Names() when empty); the first is the others' baseline.
	Sources []string
	// Dir holds token files, keys and logs (a temp dir when empty, removed afterwards).
	Dir string
	// Extra flags for every proxy.
	Extra []string
	// Options is the ramp run against each (Kind hold; Target and Token are set here).
	Options load.Options
	// OnResult, when set, gets each source's result as soon as it is in.
	OnResult func(*load.Result)
}

// Run opens Options.Sessions sessions through a fresh vncedge per source, one source at a
// time, each session with its own token so every setup is a real lookup (no cache hit).
// A source that cannot start (redis-server missing) fails the run: a comparison with a
// hole in it is not the one asked for.
func Run(ctx context.Context, ro RunOptions) ([]*load.Result, error) {
	sources := ro.Sources
	if len(sources) == 0 {
		sources = Names()
	}
	dir := ro.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "bench-tokensrc-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	o := ro.Options
	o.Kind = load.KindHold
	if o.Layout.IP != "" {
		return nil, errors.New("token sources run on the loopback VM layout only (the proxies are started here), not with --vm-listen")
	}
	workers, vms := o.Workers()
	fleet := Fleet{Workers: workers, Sessions: (o.Sessions + workers - 1) / workers, VMs: vms, Layout: o.Layout}
	var results []*load.Result
	for _, name := range sources {
		r, err := runOne(ctx, ro, o, fleet, name, dir, sources[0])
		if err != nil {
			return results, fmt.Errorf("token source %s: %w", name, err)
		}
		results = append(results, r)
		if ro.OnResult != nil {
			ro.OnResult(r)
		}
	}
	return results, nil
}

func runOne(ctx context.Context, ro RunOptions, o load.Options, fleet Fleet, name, dir, baseline string) (res *load.Result, err error) {
	src, err := Start(name, fleet, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := src.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	vmPort := o.Layout.Port
	if vmPort == 0 {
		vmPort = load.VMPort
	}
	px, err := StartProxy(ro.Vncedge, name, dir, vmPort, append(append([]string(nil), src.Flags...), ro.Extra...))
	if err != nil {
		return nil, err
	}
	defer func() {
		if perr := px.Stop(); perr != nil && err == nil {
			err = perr
		}
	}()
	o.Target = load.Target{Name: name, URL: px.URL(), Token: src.Token, Pid: px.Pid(), AdminURL: px.AdminURL()}
	if name != baseline {
		o.Target.RatioTo = []string{baseline}
	}
	o.TokenSecret = src.Secret
	r, err := load.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("no result")
	}
	return r, nil
}
