package recorder

import (
	"strconv"
	"time"
)

// File names are <time>_<session>_<target><suffix>: the session's start in UTC to the
// millisecond in a fixed-width form (so `ls` sorts recordings by time), then the session id and
// the target as the engine names them, reduced to characters that are safe in any shell, URL
// or archive and bounded in length.
const (
	timeLayout   = "20060102T150405.000Z"
	maxIDLen     = 32
	maxTargetLen = 96
	// maxAttempts bounds the numbered names tried when a name is taken (two sessions with the
	// same id in the same millisecond: a restarted process reuses ids).
	maxAttempts = 100
)

// Suffixes of the files of one recording. A recording cut before its session ended is renamed
// to carry truncatedMark before its suffix.
const (
	fbsSuffix     = ".fbs"
	inputSuffix   = ".input.jsonl"
	truncatedMark = ".truncated"
)

// baseName is the name of a recording's files without suffix; attempt > 0 numbers it when the
// plain name is taken.
func baseName(begin time.Time, id, target string, attempt int) string {
	b := make([]byte, 0, len(timeLayout)+2+maxIDLen+maxTargetLen+4)
	b = begin.UTC().AppendFormat(b, timeLayout)
	b = append(b, '_')
	b = appendSanitized(b, id, maxIDLen)
	b = append(b, '_')
	b = appendSanitized(b, target, maxTargetLen)
	if attempt > 0 {
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(attempt+1), 10)
	}
	return string(b)
}

// sanitize reduces s to a safe file name part of at most max bytes (max >= 1): letters, digits,
// '-', '_' and single dots; every other byte, and every run of them, becomes one '_' (so
// "10.0.0.5:5901" is "10.0.0.5_5901" and "unix:/run/vm.sock" is "unix_run_vm.sock"). No '/',
// no "..", no leading or trailing '.' or '_'; an empty result is "none".
func sanitize(s string, max int) string {
	return string(appendSanitized(nil, s, max))
}

func appendSanitized(dst []byte, s string, max int) []byte {
	start := len(dst)
	var prev byte // the last byte written; 0 at the start
	for i := 0; i < len(s) && len(dst)-start < max; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case c == '.':
			if prev == '.' || prev == '_' || prev == 0 {
				continue
			}
		default:
			// '_' itself joins a run of replaced bytes, so "a__b" and "a/:b" read alike.
			if prev == '_' || prev == '.' || prev == 0 {
				continue
			}
			c = '_'
		}
		dst = append(dst, c)
		prev = c
	}
	for len(dst) > start && (dst[len(dst)-1] == '.' || dst[len(dst)-1] == '_') {
		dst = dst[:len(dst)-1]
	}
	if len(dst) == start {
		dst = append(dst, "none"[:min(4, max)]...)
	}
	return dst
}
