package spec

// Stats counts the resources that the repository declares, for any host,
// and the manifest files that declare them: what `outpost validate` reports.
func (r *Repo) Stats() (resources, files int) {
	seen := map[string]bool{}
	for _, d := range r.decls {
		seen[d.file] = true
	}
	return len(r.decls), len(seen)
}

// Selects reports whether fleet.yaml has a target that applies to host;
// without a fleet.yaml every manifest applies to every host.
func (r *Repo) Selects(host Host) bool {
	if r.fleet == nil || !r.fleet.present {
		return true
	}
	for i := range r.fleet.targets {
		if r.fleet.targets[i].selects(host) {
			return true
		}
	}
	return false
}
