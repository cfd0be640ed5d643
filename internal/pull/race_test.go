//go:build race

package pull_test

// raceMemory scales memory bounds for the race detector's shadow memory.
const raceMemory = 3
