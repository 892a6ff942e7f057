package agentclient_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

// A master rotating one decky's services on a worker it enrolled earlier
// (it stored the worker's certificate fingerprint at enrollment).
func Example() {
	master, err := pki.LoadBundle("/var/lib/decnet-master/master")
	if err != nil {
		log.Fatal(err)
	}
	c, err := agentclient.New("192.0.2.10:8765", agentclient.Credentials{Bundle: master},
		agentclient.WithFingerprint("3f1c…the worker's fingerprint…"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	plan, err := c.Mutate(ctx, "web-1", []string{"ssh", "smtp"}, agentclient.MutateOptions{DryRun: true})
	switch {
	case errors.Is(err, decnet.ErrNotFound):
		log.Fatal("the worker does not run web-1")
	case errors.Is(err, decnet.ErrFingerprintMismatch):
		log.Fatal("not the worker we enrolled: a security event")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("would add", plan.Plan.Add, "and remove", plan.Plan.Remove)
	if _, err := c.Mutate(ctx, "web-1", []string{"ssh", "smtp"}, agentclient.MutateOptions{}); errors.Is(err, decnet.ErrApplyFailed) {
		// Recorded on the worker; repeating the call converges.
		log.Print(err)
	}
}
