//go:build race

package tlsio

// raceEnabled: under -race, sync.Pool drops a quarter of what is put back (on purpose, to find
// reuse bugs), so allocation counts mean nothing, and everything runs several times slower.
const raceEnabled = true
