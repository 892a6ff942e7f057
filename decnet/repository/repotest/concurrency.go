package repotest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// testConcurrentDeckyUpdates: 20 writers each add their own service to one
// decky with read-modify-write and retry on ErrConflict. Every success
// must get a distinct version and the final row must hold every writer's
// service: no update is lost.
func testConcurrentDeckyUpdates(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	const writers = 20
	mustCreateDecky(t, r, deckyOn("hot", "", "ssh"))
	start := make(chan struct{})
	var wg sync.WaitGroup
	versions := make([]int64, writers)
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for attempt := 0; attempt < 1000; attempt++ {
				d, err := r.GetDecky(ctx, "hot")
				if err != nil {
					errs[i] = err
					return
				}
				d.Services = append(d.Services, fmt.Sprintf("svc%02d", i))
				u, err := r.UpdateDecky(ctx, d)
				if errors.Is(err, decnet.ErrConflict) {
					continue
				}
				versions[i], errs[i] = u.Version, err
				return
			}
			errs[i] = fmt.Errorf("writer %d: no success in 1000 attempts", i)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i+2) {
			t.Fatalf("success versions %v: want exactly 2..%d, each once", versions, writers+1)
		}
	}
	final, err := r.GetDecky(ctx, "hot")
	noErr(t, "GetDecky", err)
	if final.Version != writers+1 {
		t.Fatalf("final version %d, want %d", final.Version, writers+1)
	}
	want := []string{"ssh"}
	for i := range writers {
		want = append(want, fmt.Sprintf("svc%02d", i))
	}
	got := slices.Clone(final.Services)
	slices.Sort(got)
	diff(t, "services after concurrent updates", want, got)
	if len(final.Services) != writers+1 {
		t.Fatalf("services %v: a writer's change was applied twice or lost", final.Services)
	}
}

// testConcurrentStaleUpdates: 20 writers holding the same version update
// once each: exactly one succeeds, the rest get ErrConflict, and the row
// holds the winner's change.
func testConcurrentStaleUpdates(t *testing.T, open Open) {
	r := open(t)
	base := mustCreateDecky(t, r, deckyOn("hot", "", "ssh"))
	staleRace(t, r, base, func(d repository.Decky) error {
		_, err := r.UpdateDecky(ctxOf(t), d)
		return err
	})
}

// staleRace has 20 writers send update with base's version and their own
// service set at once, checks that exactly one wins (the rest get
// ErrConflict) and that the row holds the winner's change, and returns the
// winner's index.
func staleRace(t *testing.T, r repository.Repository, base repository.Decky, update func(repository.Decky) error) int {
	t.Helper()
	const writers = 20
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			d := base
			d.Spec = base.Spec.Clone()
			d.Services = []string{fmt.Sprintf("svc%02d", i)}
			errs[i] = update(d)
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both succeeded with version %d", winner, i, base.Version)
		case err == nil:
			winner = i
		case !errors.Is(err, decnet.ErrConflict):
			t.Fatalf("writer %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	final, _ := r.GetDecky(ctxOf(t), base.Name)
	diff(t, "winner's services", []string{fmt.Sprintf("svc%02d", winner)}, final.Services)
	if final.Version != base.Version+1 {
		t.Fatalf("final version %d, want %d", final.Version, base.Version+1)
	}
	return winner
}

// testConcurrentTokenConsume: 50 goroutines consume one token; exactly one
// wins, every other gets ErrConflict.
func testConcurrentTokenConsume(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	const consumers = 50
	now := time.Now()
	tok := repository.JoinToken{Hash: fp("race"), Name: "worker-1", ExpiresAt: now.Add(time.Hour)}
	noErr(t, "CreateToken", r.CreateToken(ctx, tok))
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, consumers)
	for i := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = r.ConsumeToken(ctx, tok.Hash, now)
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, decnet.ErrConflict):
			t.Fatalf("consumer %d: %v, want ErrConflict", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d consumers won, want exactly 1", wins)
	}
}
