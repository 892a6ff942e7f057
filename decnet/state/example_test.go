package state_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/state"
)

// A state-changing operation: lock, load, modify, save atomically.
func Example() {
	dir, err := os.MkdirTemp("", "decnet-state-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	store, err := state.Open(dir) // production: state.Open(state.DefaultDir)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	unlock, err := store.Lock(ctx)
	if err != nil {
		panic(err)
	}
	defer unlock()

	st, err := store.Load(ctx)
	if errors.Is(err, decnet.ErrNotFound) {
		fmt.Println("nothing deployed yet")
		st = &state.State{Config: decnet.Config{Mode: decnet.ModeUnihost}}
	} else if err != nil {
		panic(err) // errors.Is(err, state.ErrCorrupt): the message names the file
	}
	st.UpdatedAt = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	if err := store.Save(ctx, st); err != nil {
		panic(err)
	}
	back, err := store.Load(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.Config.Mode, back.UpdatedAt.Format(time.RFC3339))
	// Output:
	// nothing deployed yet
	// unihost 2026-12-04T12:00:00Z
}
