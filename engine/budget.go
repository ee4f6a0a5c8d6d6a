package engine

import (
	"bufio"
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
)

// The global memory budget: --max-buffered bounds one session's queues,
// but sessions x --max-buffered can be more than the box has. Every sweep
// each loop adds up what its sockets have queued (gnet's inbound and
// outbound buffers: what a slow or stalled peer makes us hold) and
// publishes it; when the sum over all loops is above MemoryBudget, each
// loop sheds its biggest queues first, its share of the excess, with 1008.

// queuedBytes is what gnet holds for this session's two sockets.
func (s *session) queuedBytes() int64 {
	var n int
	if c := s.browser.c; c != nil {
		n += c.InboundBuffered() + c.OutboundBuffered()
	}
	if s.vm != nil {
		n += s.vm.InboundBuffered() + s.vm.OutboundBuffered()
	}
	if s.vmEnd != nil && s.vmEnd.pending != nil {
		n += len(s.vmEnd.pending.B)
	}
	return int64(n)
}

// measureQueued adds up this loop's queued bytes and publishes the sum.
func (ls *loopState) measureQueued() int64 {
	var total int64
	ls.sessions.each(func(s *session) { total += s.queuedBytes() })
	ls.conns.each(func(h *httpConn) {
		if c := h.browser.c; c != nil {
			total += int64(c.InboundBuffered() + c.OutboundBuffered())
		}
	})
	ls.queued.Store(total)
	return total
}

// queuedTotal is the last published sum over all loops.
func (srv *Server) queuedTotal() int64 {
	var total int64
	srv.forEachLoop(func(ls *loopState) { total += ls.queued.Load() })
	return total
}

// enforceBudget sheds this loop's biggest queues while the whole process
// is over MemoryBudget: this loop's part of the excess is in proportion
// to what it holds.
func (ls *loopState) enforceBudget(mine int64) {
	budget := ls.srv.cfg.MemoryBudget
	if budget <= 0 || mine == 0 {
		return
	}
	total := ls.srv.queuedTotal()
	if total <= budget {
		return
	}
	share := (total - budget) * mine / total
	type queued struct {
		s *session
		n int64
	}
	var big []queued
	ls.sessions.each(func(s *session) {
		n := s.queuedBytes()
		switch {
		case n == 0:
		case s.state == stClosing && s.browser.c != nil:
			// Shed already, or ending: its linger is a luxury now.
			share -= n
			_ = s.browser.c.Close()
		case s.state == stRelaying:
			big = append(big, queued{s, n})
		}
	})
	slices.SortFunc(big, func(a, b queued) int { return int(b.n - a.n) })
	for _, q := range big {
		if share <= 0 {
			break
		}
		share -= q.n
		ls.srv.met.budgetSheds.Inc()
		q.s.closeWith(ws.StatusPolicyViolation, reasonMemoryBudget, "server memory budget exceeded")
	}
}

// defaultMemoryBudget is a quarter of the memory this process may use:
// its cgroup's limit when it has one, else the machine's.
func defaultMemoryBudget() int64 {
	limit := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (limit == 0 || n < limit) {
			limit = n
		}
	}
	if limit <= 0 {
		return 1 << 30
	}
	return limit / 4
}

// memTotal reads MemTotal from /proc/meminfo, in bytes; 0 when unknown.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			fields := bytes.Fields(v)
			if len(fields) > 0 {
				if n, err := strconv.ParseInt(string(fields[0]), 10, 64); err == nil {
					return n << 10 // kB
				}
			}
		}
	}
	return 0
}
