//go:build race

package spec

// raceMemory scales memory bounds for the race detector's shadow memory.
const raceMemory = 3
