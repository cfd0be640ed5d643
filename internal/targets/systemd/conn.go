package systemd

// Connected reports whether the driver's connection to the system bus is
// still open. A bus that restarted closes it for good: the caller builds a
// new driver.
func (d *Driver) Connected() bool { return d.conn.Connected() }
