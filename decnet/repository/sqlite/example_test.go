package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

// Open a store in a data directory, enroll a worker, place a decky on it
// and ask which deckies are due for rotation.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "decnet-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "master.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	h, err := s.AddHost(ctx, repository.Host{Name: "worker-1", Address: "192.0.2.10"})
	if err != nil {
		log.Fatal(err)
	}
	last := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d, err := s.CreateDecky(ctx, repository.Decky{
		Name: "web-01", HostUUID: h.UUID, Services: []string{"http", "ssh"}, LastMutated: last,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Name, d.State, d.Version)

	due, err := s.ListDue(ctx, last.Add(30*time.Minute), 30*time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("due:", len(due), due[0].Name)
	// Output:
	// web-01 pending 1
	// due: 1 web-01
}
