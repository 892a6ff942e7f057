// Package state keeps a worker's state file: the fleet configuration the
// agent was last asked to run (its desired state) and the path of the compose
// file written for it.
//
// The file lives in a configured, absolute directory ([DefaultDir] in
// production); the package never resolves anything against the current
// working directory. [Store.Save] is atomic: a reader, or a process started
// after a crash at any instant, sees either the previous file or the new one,
// never a mix. [Store.Lock] serialises state-changing operations both between
// goroutines of one process and between processes (through a lock file), so
// an agent and, say, an operator's maintenance command cannot interleave
// load-modify-save cycles.
//
// A typical state-changing operation:
//
//	unlock, err := store.Lock(ctx)
//	if err != nil { return err }
//	defer unlock()
//	st, err := store.Load(ctx)   // errors.Is(err, decnet.ErrNotFound): nothing deployed
//	...modify st...
//	err = store.Save(ctx, st)
package state
