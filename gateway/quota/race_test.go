//go:build race

package quota

// raceEnabled is set under -race, whose sync.Pool drops items at random
// and so allocates where a normal build does not.
const raceEnabled = true
