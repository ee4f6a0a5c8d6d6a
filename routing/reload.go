package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// FileStatus is what a reload did with one file of a token file source.
type FileStatus uint8

const (
	// FileApplied: the file was read and its tokens now serve.
	FileApplied FileStatus = iota + 1
	// FileKept: the file has bad lines or could not be read; its previous
	// tokens (none if it is new) keep serving, whole. An error.
	FileKept
	// FileEmpty: the file holds nothing but white space, as a file being
	// rewritten in place does for a moment; its previous tokens keep
	// serving. A warning. (A file with only comments is applied: that is how
	// to remove every token.)
	FileEmpty
	// FileSkipped: a directory entry that leads nowhere (a dangling symlink
	// or a symlink loop) is not a token file; any tokens it had are gone.
	// A warning.
	FileSkipped
	// FileRemoved: the file is no longer in the directory; its tokens are gone.
	FileRemoved
)

func (s FileStatus) String() string {
	switch s {
	case FileApplied:
		return "applied"
	case FileKept:
		return "kept previous"
	case FileEmpty:
		return "empty, kept previous"
	case FileSkipped:
		return "skipped"
	case FileRemoved:
		return "removed"
	}
	return fmt.Sprintf("FileStatus(%d)", uint8(s))
}

// FileReport is one file's part of a reload.
type FileReport struct {
	Path     string
	Status   FileStatus
	Tokens   int   // tokens this file serves after the reload
	BadLines int   // FileKept: how many lines were bad (0 when unreadable)
	Err      error // FileKept: why (joined *LineError values, or the read error); FileSkipped: why
}

// SourceReload is what one reload did to one source.
type SourceReload struct {
	Source  string // the source's Name
	Detail  string // e.g. the token file's path
	Tokens  int    // tokens served after the reload (-1 when the source cannot tell)
	Added   int
	Removed int
	Changed int // same token, other target or options; live sessions are not affected
	// RemovedHashes are the TokenHash of every token gone in this reload,
	// for revocation.
	RemovedHashes []string
	Files         []FileReport
	// Err is set when the source as a whole could not be read (its previous
	// contents all keep serving).
	Err error
}

// Failed reports whether anything was not applied because of an error.
func (s SourceReload) Failed() bool {
	if s.Err != nil {
		return true
	}
	for _, f := range s.Files {
		if f.Status == FileKept {
			return true
		}
	}
	return false
}

// Error describes every failure of the reload, or is nil when none.
func (s SourceReload) Error() error {
	var errs []error
	name := s.Source
	if s.Detail != "" {
		name += " " + s.Detail
	}
	if s.Err != nil {
		errs = append(errs, fmt.Errorf("%s: kept all its previous tokens: %w", name, s.Err))
	}
	for _, f := range s.Files {
		if f.Status != FileKept {
			continue
		}
		why := "unreadable"
		if f.BadLines > 0 {
			why = plural(f.BadLines, "bad line")
		}
		errs = append(errs, fmt.Errorf("%s: %s kept its previous %s (%s): %w",
			name, f.Path, plural(f.Tokens, "token"), why, f.Err))
	}
	return errors.Join(errs...)
}

// Warnings lists what was applied with a caveat: empty files kept, skipped
// directory entries.
func (s SourceReload) Warnings() []string {
	var w []string
	for _, f := range s.Files {
		switch f.Status {
		case FileEmpty:
			w = append(w, fmt.Sprintf("%s is empty: kept its previous %s (a file with only a comment line removes every token)",
				f.Path, plural(f.Tokens, "token")))
		case FileSkipped:
			w = append(w, fmt.Sprintf("%s skipped: %v", f.Path, f.Err))
		}
	}
	return w
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ReloadReport is what Router.ReloadReport did, source by source.
type ReloadReport struct {
	Sources []SourceReload
}

// Err joins every source's failures; nil when everything was applied
// (warnings are not errors).
func (r ReloadReport) Err() error {
	var errs []error
	for _, s := range r.Sources {
		if err := s.Error(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reloader is implemented by sources that can re-read their data (SIGHUP,
// or a change seen by Changer). A reload that fails in part keeps the
// previous data for that part, and says so in the report.
type Reloader interface {
	Reload() SourceReload
}

// Changer is implemented by reloadable sources that can tell cheaply
// (without reading their data) that it changed since their last reload.
type Changer interface {
	Changed() bool
}

// Changed reports whether any source's data changed since its last reload
// (token files and password files by size and modification time). It is
// cheap enough to poll every second; a file that stays broken reports a
// change once, not on every poll.
func (r *Router) Changed() bool {
	for _, s := range r.sources {
		if c, ok := s.(Changer); ok && c.Changed() {
			return true
		}
	}
	return false
}

// Reload re-reads every source that supports it, logs what happened (one
// line per source: applied, with counts; or which files kept their
// previous contents and why), revokes the tokens that disappeared (see
// OnRevoke) and returns an error naming every part that was not applied,
// or nil.
func (r *Router) Reload() error {
	return r.ReloadReport().Err()
}

// ReloadReport is Reload returning the whole report.
func (r *Router) ReloadReport() ReloadReport {
	var rep ReloadReport
	for _, s := range r.sources {
		rl, ok := s.(Reloader)
		if !ok {
			continue
		}
		sr := rl.Reload()
		if sr.Source == "" {
			sr.Source = s.Name()
		}
		rep.Sources = append(rep.Sources, sr)
		r.logReload(sr)
		for _, h := range sr.RemovedHashes {
			r.fileClaims.release(h)
			r.notifyRevoked(h)
		}
	}
	return rep
}

func (r *Router) logReload(s SourceReload) {
	attrs := []slog.Attr{slog.String("source", s.Source)}
	if s.Detail != "" {
		attrs = append(attrs, slog.String("path", s.Detail))
	}
	if s.Tokens >= 0 {
		attrs = append(attrs, slog.Int("tokens", s.Tokens))
	}
	attrs = append(attrs, slog.Int("added", s.Added), slog.Int("removed", s.Removed), slog.Int("changed", s.Changed))
	ctx := context.Background()
	for _, w := range s.Warnings() {
		r.log.LogAttrs(ctx, slog.LevelWarn, "token source reload warning", slog.String("source", s.Source), slog.String("warning", w))
	}
	if err := s.Error(); err != nil {
		msg := "token source reloaded in part; the failed parts keep their previous tokens"
		if s.Err != nil {
			msg = "token source reload failed; keeping all its previous tokens"
		}
		r.log.LogAttrs(ctx, slog.LevelError, msg, append(attrs, slog.String("err", oneLine(err.Error())))...)
		return
	}
	r.log.LogAttrs(ctx, slog.LevelInfo, "token source reloaded", attrs...)
}

// oneLine keeps a joined error on one log line.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
