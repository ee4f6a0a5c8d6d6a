// Package tlsio runs Go's crypto/tls on gnet event loops: the handshake on a bounded pool of
// worker goroutines, the record layer (decryption and encryption) on the loop itself, with no
// goroutine per connection and no kernel TLS.
//
// # The model
//
// crypto/tls talks only to a net.Conn. Each Conn gives it a wire: a net.Conn with no socket,
// which the loop feeds and whose output goes to a sink (the gnet.Conn). The wire has three modes:
//
//   - worker: a handshake runs on a Pool worker. Its reads block until the loop has fed bytes;
//     its writes are queued and announced with notify. crypto/tls keeps handshake errors, so a
//     handshake cannot be suspended and resumed on the loop; a goroutine it is, but only once a
//     complete ClientHello has arrived (ScanClientHello runs on the loop, on the bytes gnet
//     keeps): a peer that sends half a hello costs its bytes and nothing else, and the engine's
//     handshake deadline reaps it.
//   - loop: after the handshake. Input lends the wire gnet's buffered bytes and calls
//     crypto/tls's Read until the wire answers "would block", a temporary net.Error that
//     crypto/tls does not keep (readRecordOrCCS in crypto/tls/conn.go). The wire hands over
//     whole records only, so a partial record waits in gnet's buffer, not in crypto/tls's.
//     Write encrypts into crypto/tls's pooled buffer and the wire passes each record to the sink
//     at once: the ciphertext is not copied again here.
//   - direct: a client handshake runs over the real socket on the goroutine that dialled it;
//     then the Conn switches to loop mode and the engine gives the socket to gnet.
//
// # Who calls what, where
//
// On the loop (one goroutine per Conn, never concurrently): NewServer, Input, Peek, Discard,
// Buffered, Write, Writev, CloseWrite, EOF, Progress, Close, SetSink, ConnectionState,
// PeerSubject. None of them blocks.
//
// On a worker: the handshake, which calls notify when it has output for the peer, when it has
// read everything it was given while Input left bytes behind, and when it ends. notify must
// only schedule Progress on the loop (gnet's EventLoop.Execute); it may run once after Close.
//
// On the dialling goroutine (off the loop): Client, which blocks for the handshake, bounded by
// its context.
//
// Anywhere: NewPool, Pool.Stats, NewStore, Store.Reload, Store.Watch (its own goroutine),
// Store.ServerConfig, Store.UpstreamConfig, Store.Stats.
//
// # Costs
//
// Write and Writev allocate nothing. Input allocates once per call that brings crypto/tls new
// records and nothing otherwise: crypto/tls's readFromUntil makes an atLeastReader that escapes
// through bytes.Buffer.ReadFrom, and no caller of crypto/tls can avoid it (the figure per 64 KiB
// message is about two, one per buffer of records). The Conn's own buffers (plaintext, and
// handshake input and output) come from the Pool and go back as soon as they are empty, so an
// idle session holds only crypto/tls's state, its input buffer (sized by the largest record the
// peer sent) and the Conn struct: about 4.5 KiB in TLS 1.2 and 7 KiB in TLS 1.3, no more than
// a bare crypto/tls server connection (see TestIdleSessionMemory and BenchmarkIdleSession).
//
// # Certificates
//
// A Store holds every file as one immutable snapshot swapped atomically: server pairs chosen by
// SNI, the client CA and --tls-client-cn patterns, the roots for TLS to VMs. Reload replaces it
// only when every file is good; Watch polls the files' stamps and reloads on change.
package tlsio
