//go:build !race

package tlsio

const raceEnabled = false
