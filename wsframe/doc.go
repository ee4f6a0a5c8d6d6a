// Package wsframe is the WebSocket frame codec of vncedge: pure functions over byte slices that
// parse and build RFC 6455 frame headers, unmask payloads streamed in pieces, encode and check
// close frames, and carry binary data in the legacy base64 subprotocol.
//
// It holds no state of its own and does no I/O, so the engine can run it directly on gnet's read
// buffer. The functions on the per-message path (HeaderLen, ParseHeader, CheckClient on valid
// frames, PutHeader, Unmask, Base64Decoder.Decode and AppendBase64 into a buffer with room)
// allocate nothing. It builds on the types of github.com/gobwas/ws, which only offers
// io.Reader/io.Writer based framing.
package wsframe
