package systemd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/outpost-gitops/outpost/internal/spec"
)

// Healthy reports whether the unit r is healthy: a failed unit never is; a
// unit whose state is running must be active, and a service must stay
// active, without restarting, for the settle time (Healthy waits for the
// rest of it). A unit whose state is stopped or unset is healthy unless it
// failed. It implements converge.HealthChecker.
func (d *Driver) Healthy(ctx context.Context, r *spec.Resource) (bool, string, error) {
	u, err := d.unit(r)
	if err != nil {
		return false, "", err
	}
	snap, err := d.health(ctx, u.Name)
	if err != nil {
		return false, "", err
	}
	if snap.active == "failed" {
		return false, snap.failure(), nil
	}
	if u.State != UnitRunning {
		return true, "", nil
	}
	if snap.active != "active" && snap.active != "reloading" {
		return false, "unit is " + snap.active + " (" + snap.sub + ")", nil
	}
	if !strings.HasSuffix(u.Name, ".service") {
		return true, "", nil
	}
	if left := d.settle - time.Since(snap.since); left > 0 {
		t := time.NewTimer(left)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-t.C:
		}
		again, err := d.health(ctx, u.Name)
		if err != nil {
			return false, "", err
		}
		switch {
		case again.active == "failed":
			return false, again.failure(), nil
		case again.active != "active" && again.active != "reloading":
			return false, "unit is " + again.active + " (" + again.sub + ")", nil
		case again.since != snap.since || again.restarts != snap.restarts:
			return false, fmt.Sprintf("service restarted within %s", d.settle), nil
		}
	}
	return true, "", nil
}

type healthSnap struct {
	active, sub string
	since       time.Time // ActiveEnterTimestamp
	restarts    uint32
	result      string
	exitStatus  int32
}

func (s healthSnap) failure() string {
	msg := "unit failed"
	if s.result != "" {
		msg += ": " + s.result
	}
	if s.exitStatus != 0 {
		msg += fmt.Sprintf(", exit status %d", s.exitStatus)
	}
	return msg
}

func (d *Driver) health(ctx context.Context, name string) (healthSnap, error) {
	props, err := d.conn.GetUnitPropertiesContext(ctx, name)
	if err != nil {
		return healthSnap{}, fmt.Errorf("unit %s: read properties: %w", name, err)
	}
	var s healthSnap
	s.active, _ = props["ActiveState"].(string)
	s.sub, _ = props["SubState"].(string)
	if us, ok := props["ActiveEnterTimestamp"].(uint64); ok && us > 0 {
		s.since = time.UnixMicro(int64(us))
	}
	if typ := unitType(name); typ != "" {
		if tp, err := d.conn.GetUnitTypePropertiesContext(ctx, name, typ); err == nil {
			s.result, _ = tp["Result"].(string)
			s.restarts, _ = tp["NRestarts"].(uint32)
			s.exitStatus, _ = tp["ExecMainStatus"].(int32)
		}
	}
	return s, nil
}
