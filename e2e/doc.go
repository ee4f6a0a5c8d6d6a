// Package e2e proves vncedge with software nobody here wrote: noVNC (our viewer on the npm core,
// and Debian's full app) in headless Chromium, a real TigerVNC server, and websockify as the
// reference proxy. It holds only tests; they need the tools that `make e2e-deps` installs and say
// loudly which one is missing when they skip (outside CI; with CI=true a missing tool fails).
package e2e
