// Package engine is vncedge's proxy core: a gnet event handler that turns
// WebSocket sessions from browsers into TCP sessions to VNC servers (VMs).
//
// A session lives on one event loop from accept to close: its browser
// socket is accepted there and its VM socket is enrolled on the same loop,
// so every piece of session state is touched by one goroutine and needs no
// lock. Where to read what:
//
//   - handler.go: gnet's callbacks, dispatched on a socket's context.
//   - httpconn.go, upgrade.go: an accepted socket before it is a session:
//     request heads, static files, HTTP errors, the WebSocket upgrade.
//   - session.go: a session's states, its allowed transitions and the
//     deadline of every state: the whole life of a session in one place.
//   - dial.go: the setup states (route lookup, VM connect) on workers.
//   - relay.go: the byte path, browser frames to the VM stream and back.
//   - park.go: backpressure, by taking a socket off the loop and back.
//   - closing.go: how a session ends, gracefully, with a code and reason.
//   - browser.go: the browser socket as the rest sees it (the seam for TLS).
//
// Anything that could block (token lookups, DNS, connect) runs on a worker
// goroutine and resumes the session on its loop with EventLoop.Execute.
// Deadlines are timestamps swept per loop from gnet's ticker; there is no
// goroutine or timer per session. gnet cannot pause reading a socket, so
// backpressure parks the socket of the side that is ahead (park.go).
package engine
