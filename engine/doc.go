// Package engine is vncedge's proxy core: a gnet event handler that turns
// WebSocket sessions from browsers into TCP sessions to VNC servers.
//
// A session lives on one event loop from accept to close: its browser
// connection is accepted there and its upstream connection is enrolled on the
// same loop, so every piece of session state is touched by one goroutine and
// needs no lock. Data flows one way through an explicit state machine:
//
//	handshake -> resolving -> dialing -> relaying -> closing -> closed
//
// Anything that could block (token lookups, DNS, connect) runs on a worker
// goroutine and resumes the session on its loop with EventLoop.Execute.
// Deadlines are timestamps swept per loop from gnet's ticker; there is no
// goroutine or timer per session. See ../shared/DESIGN.md for the reasoning.
package engine
