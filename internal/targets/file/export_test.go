package file

import "time"

// SetClock replaces the clock that decides whether a file version is old
// enough to be remembered as verified.
func SetClock(d *Driver, now func() time.Time) { d.now = now }

// Reads returns how many files' content the driver has read.
func Reads(d *Driver) int64 { return d.reads.Load() }
