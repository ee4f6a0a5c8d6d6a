// Package recorder records RFB sessions for vncedge (--record DIR, --record-input,
// --record-required): the VM-to-browser stream as an FBS 001.000 file, the format of rfbproxy
// and of the TightVNC and noVNC players, and optionally the browser's key and pointer events
// as JSON lines beside it.
//
// # Feeding a recording from an event loop
//
// Recorder.Start returns a Recording for a session; the session's loop then hands it, in order,
// the VM's bytes from ServerInit on (FromVM, in pieces of any size), every SetPixelFormat the
// browser sends, the browser's KeyEvent and PointerEvent messages (Key, Pointer; or all three
// straight from the rfb.Scanner's observer with Observe) and the end (End). These calls never block and never do I/O: each copies into the recording's queue, a
// list of fixed-size segments under a lock that is held only for that copy or for a swap of
// slices, and wakes the recording's writer goroutine, which writes the file. In steady state they
// allocate nothing (segments are reused from a free list; TestZeroAllocs).
//
// # The file
//
// An FBS file (rfb.AppendFBSHeader) whose first block is a synthesized handshake with security
// type None and the VM's ServerInit carrying the pixel format of the recorded pixels
// (rfb.AppendRecordingStart), so an independent player can replay it; then one block per chunk
// the VM sent (split into several when a chunk exceeds a segment), stamped with milliseconds
// since Session.Begin. The data of all blocks after the first is exactly the stream the browser
// received after ServerInit. ServerInit is held until the format is known: the first
// SetPixelFormat, or the first VM bytes after ServerInit (the client kept the server's format).
// A later SetPixelFormat that changes the format is counted and logged, and the recording goes
// on (see Recording.SetPixelFormat for why it is not split).
//
// Names are <UTC time>_<session id>_<target>.fbs (and .input.jsonl), e.g.
// 20260312T101530.123Z_4f_10.0.0.5_5901.fbs: they sort by time; id and target are reduced to
// [A-Za-z0-9._-] without "..", and bounded. Files are created with O_EXCL and mode 0600; a name
// already taken (a restarted process reuses session ids) gets a number, "-2", "-3", ...
//
// # Crashes, slow disks and errors
//
// Every write covers whole blocks (and whole lines), so a process that dies leaves a file that
// a decoder reads to its last block, and a write that fails half-way is cut back to the last
// whole block. Written data is synced within Config.SyncInterval (1 s by default), which bounds
// what a power cut loses.
//
// A slow or full disk never stalls the relay and never grows memory without bound: when a
// recording's queue would pass its budget (Config.QueueBytes, 4 MiB by default, and optionally
// Config.TotalQueueBytes for all together), the recording is cut. So it is when a file cannot be
// created or written, or the VM's ServerInit is malformed. Cut means: nothing more is queued,
// what was queued before a queue-full cut is still written (a write error drops it), the files
// are closed and renamed to <name>.truncated.fbs (and <name>.truncated.input.jsonl, whose last
// line then says "truncated" and why), a line is logged and Stats counts it as truncated
// (queue full) or failed (an error). Recording.Failed then reports true, which the engine reads
// for --record-required to close the session instead of letting it go on unrecorded.
//
// # Metrics
//
// NewStats registers vncedge_recordings_started_total, _completed_total, _truncated_total,
// _failed_total, vncedge_recordings_active, vncedge_recording_bytes_written_total,
// vncedge_recording_pixel_format_changes_total, vncedge_recording_queued_bytes and
// vncedge_recording_queue_high_water_bytes (the largest single queue seen) in the engine's set.
package recorder
