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
