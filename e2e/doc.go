// Package e2e proves vncedge with software nobody here wrote: noVNC (our viewer on the npm core,
// and Debian's full app) in headless Chromium, a real TigerVNC server, openssl's s_client, and
// websockify as the reference proxy. It holds only tests; they need the tools that `make e2e-deps`
// installs and say loudly which one is missing when they skip (outside CI; with CI=true a missing
// tool fails).
//
// The TLS checks use a CA the test makes (crypto/x509). Go's TLS client and openssl verify the
// whole chain against it; Chromium is started with --ignore-certificate-errors-spki-list naming
// the test's leaf keys, so it takes exactly those certificates and still refuses any other
// (TestBrowsersRFB checks that with a server whose key is not named).
package e2e
