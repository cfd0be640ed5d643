// Package status owns Outpost's status notes in Git and the reading of a
// fleet's notes.
//
// After each apply a host writes one JSON note (Note, schema 1) on the
// commit it worked on, into its own notes ref refs/notes/outpost/<host> of
// its local clone (Notes). A Pusher sends that ref to the source repository
// or to a separate status repository, fast-forward only, building on what
// the remote already holds. Fleet reads every host's ref of a repository and
// renders the fleet's state as a table or JSON.
//
// The notes are plain git notes: `git log --notes='outpost/*'` and
// `git notes --ref=outpost/HOST show COMMIT` read them.
//
// status imports spec, pull (to list a remote's notes refs by prefix) and
// go-git. It never imports a target, the engine
// (converge) or the daemon (agent): the daemon maps its result to a Note.
package status
