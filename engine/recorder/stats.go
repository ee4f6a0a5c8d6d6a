package recorder

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Stats are the counters of every recording of one or more Recorders, as VictoriaMetrics series
// so the engine exports them with the rest of its metrics. Each recording ends in exactly one
// of Completed, Truncated and Failed: the first cause that stopped it.
type Stats struct {
	// Started counts recordings begun (vncedge_recordings_started_total).
	Started *metrics.Counter
	// Completed counts recordings that lasted as long as their session and were written in
	// full (vncedge_recordings_completed_total).
	Completed *metrics.Counter
	// Truncated counts recordings cut because their queue was full: the disk did not keep up
	// (vncedge_recordings_truncated_total).
	Truncated *metrics.Counter
	// Failed counts recordings cut by an error: the files could not be created or written, or
	// the VM's ServerInit was malformed (vncedge_recordings_failed_total).
	Failed *metrics.Counter
	// BytesWritten counts bytes written to recording files, both kinds
	// (vncedge_recording_bytes_written_total).
	BytesWritten *metrics.Counter
	// FormatChanges counts SetPixelFormat messages that changed the format in the middle of
	// a recording (vncedge_recording_pixel_format_changes_total); see the package doc.
	FormatChanges *metrics.Counter

	active    atomic.Int64
	queued    atomic.Int64
	highWater atomic.Int64
}

// Series names NewStats registers.
const (
	MetricStarted        = "vncedge_recordings_started_total"
	MetricCompleted      = "vncedge_recordings_completed_total"
	MetricTruncated      = "vncedge_recordings_truncated_total"
	MetricFailed         = "vncedge_recordings_failed_total"
	MetricActive         = "vncedge_recordings_active"
	MetricBytesWritten   = "vncedge_recording_bytes_written_total"
	MetricFormatChanges  = "vncedge_recording_pixel_format_changes_total"
	MetricQueuedBytes    = "vncedge_recording_queued_bytes"
	MetricQueueHighWater = "vncedge_recording_queue_high_water_bytes"
)

// NewStats registers the recorder's series in set (a fresh private set when nil, for tests and
// tools). Like every metrics.Set registration it panics when a name is taken: call it once per
// set.
func NewStats(set *metrics.Set) *Stats {
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Stats{
		Started:       set.NewCounter(MetricStarted),
		Completed:     set.NewCounter(MetricCompleted),
		Truncated:     set.NewCounter(MetricTruncated),
		Failed:        set.NewCounter(MetricFailed),
		BytesWritten:  set.NewCounter(MetricBytesWritten),
		FormatChanges: set.NewCounter(MetricFormatChanges),
	}
	set.NewGauge(MetricActive, func() float64 { return float64(s.active.Load()) })
	set.NewGauge(MetricQueuedBytes, func() float64 { return float64(s.queued.Load()) })
	set.NewGauge(MetricQueueHighWater, func() float64 { return float64(s.highWater.Load()) })
	return s
}

// Active is the number of recordings whose files are not closed yet.
func (s *Stats) Active() int64 { return s.active.Load() }

// QueuedBytes is the memory the queues of all recordings hold now: buffers waiting for the disk
// or being written.
func (s *Stats) QueuedBytes() int64 { return s.queued.Load() }

// QueueHighWater is the most memory one recording's queue has held since the process started;
// near the per-recording budget it means the disk is close to cutting recordings.
func (s *Stats) QueueHighWater() int64 { return s.highWater.Load() }

// noteQueue raises the high-water mark to n.
func (s *Stats) noteQueue(n int64) {
	for {
		hw := s.highWater.Load()
		if n <= hw || s.highWater.CompareAndSwap(hw, n) {
			return
		}
	}
}
