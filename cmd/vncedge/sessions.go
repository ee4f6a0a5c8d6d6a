package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"vncedge/engine"
)

// runSessions is `vncedge sessions`: the live sessions of a running
// vncedge, from its admin listener, as a table.
func runSessions(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vncedge sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", engine.DefaultConfig().Admin, "the admin listener of the vncedge to ask")
	tokenFile := fs.String("admin-token-file", "", "the bearer token file of that listener (--admin-token-file)")
	target := fs.String("target", "", "only sessions to this VM (host:port as dialled, or as named)")
	token := fs.String("token", "", "only sessions of this token hash")
	asJSON := fs.Bool("json", false, "print the admin API's JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vncedge sessions [--admin ADDR] [--admin-token-file FILE] [--target HOST:PORT] [--token HASH] [--json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	q := url.Values{}
	if *target != "" {
		q.Set("target", *target)
	}
	if *token != "" {
		q.Set("token", *token)
	}
	u := "http://" + *admin + "/sessions"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, "vncedge sessions:", err)
		return exitUsage
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "vncedge sessions:", err)
			return exitUsage
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	}
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "vncedge sessions:", err)
		return exitRuntime
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "vncedge sessions: %s: %s %s\n", u, resp.Status, strings.TrimSpace(string(body)))
		return exitRuntime
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return exitOK
	}
	var list struct {
		Sessions []engine.SessionInfo `json:"sessions"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		fmt.Fprintln(stderr, "vncedge sessions: bad answer:", err)
		return exitRuntime
	}
	printSessions(stdout, list.Sessions, time.Now())
	return exitOK
}

func printSessions(w io.Writer, list []engine.SessionInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLIENT\tTARGET\tVM\tTOKEN\tSTATE\tVIEW-ONLY\tRECORDING\tTO VM\tTO BROWSER\tAGE")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Client, s.Target, s.VM,
			dash(s.Token), s.State, yes(s.ViewOnly), yes(s.Recording), formatSize(s.BytesToVM),
			formatSize(s.BytesToBrowser), now.Sub(s.Started).Round(time.Second))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d sessions\n", len(list))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
