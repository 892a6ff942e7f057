// Command quickstart runs decnet's main job end to end on one machine: a
// worker agent (the real decnet-agent binary) on loopback, steered over real
// mTLS by the master's client.
//
// It mints a throwaway swarm CA with a master and a worker identity, starts
// `decnet-agent serve` on 127.0.0.1 with a private bridge LAN, deploys two
// deckies, reads a service banner from a decky's own IP address, rotates one
// decky's services (a dry run first, then for real), shows the status after
// each step, tears everything down and stops the agent with SIGTERM.
//
// The default service catalog runs the decoy image decnet/decoy:<version>.
// Until that image ships, quickstart builds a placeholder under that tag
// from its own executable (TCP listeners on each service's ports that greet
// with a banner), and removes it again at the end. Build it statically:
//
//	CGO_ENABLED=0 go build -o bin/ ./cmd/decnet-agent ./examples/quickstart
//	bin/quickstart -agent bin/decnet-agent
//
// (scripts/quickstart does exactly that.)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/pki"
)

const (
	project     = "decnet-quickstart"
	networkName = "decnet_quickstart"
	pauseImage  = "decnet/quickstart-pause:" + decnet.Version
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "decoy" {
		os.Exit(decoy(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	agentBin := fs.String("agent", "", "path of a static decnet-agent binary (default: next to this program)")
	workdir := fs.String("workdir", "", "directory for the CA, bundles and agent state (default: a new temporary directory, removed at the end)")
	subnet := fs.String("subnet", "172.30.254.0/24", "private bridge LAN for the deckies")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lan, err := netip.ParsePrefix(*subnet)
	if err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	if *agentBin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*agentBin = filepath.Join(filepath.Dir(self), "decnet-agent")
	}
	if _, err := os.Stat(*agentBin); err != nil {
		return fmt.Errorf("decnet-agent binary: %w (build it with CGO_ENABLED=0 go build -o bin/ ./cmd/decnet-agent)", err)
	}
	if *workdir == "" {
		dir, err := os.MkdirTemp("", "decnet-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*workdir = dir
	}

	step(out, "1. minting a swarm CA, the master's identity and a worker bundle (ECDSA P-256, TLS 1.3 only)")
	master, workerDir, err := mintIdentities(*workdir)
	if err != nil {
		return err
	}
	worker, err := pki.LoadBundle(workerDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   worker fingerprint %s\n", worker.Fingerprint())

	step(out, "2. building the placeholder decoy image "+decnet.DecoyImage+" locally (nothing is pulled)")
	eng, err := engine.New(engine.Config{Project: project})
	if err != nil {
		return err
	}
	defer eng.Close()
	removeDecoy, err := ensureDecoyImage(ctx, eng)
	if err != nil {
		return err
	}
	defer removeDecoy()

	step(out, "3. starting decnet-agent serve on loopback (mTLS only)")
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	agent, err := startAgent(*agentBin, *workdir, workerDir, addr, lan)
	if err != nil {
		return err
	}
	defer func() {
		if serr := agent.stop(); serr != nil && err == nil {
			err = serr
		}
		_ = eng.RemoveImage(context.Background(), pauseImage)
	}()

	client, err := agentclient.New(addr, agentclient.Credentials{Bundle: master}, agentclient.WithFingerprint(worker.Fingerprint()))
	if err != nil {
		return err
	}
	defer client.Close()
	health, err := waitHealthy(ctx, client, agent)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   agent %s at https://%s answers: version %s, protocol %d\n", worker.Name(), addr, health.Version, health.Protocol)

	step(out, "4. deploying two deckies (the agent allocates their IPs from its LAN)")
	cfg := decnet.Config{
		Mode: decnet.ModeSwarm,
		Deckies: []decnet.Decky{
			{Name: "web-01", Hostname: "web01.corp.example", Services: []string{"ssh", "http", "ftp"}, OS: decnet.OSLinux},
			{Name: "files-01", Hostname: "FILES01", Services: []string{"smb", "rdp"}, OS: decnet.OSWindows},
		},
	}
	res, err := client.Deploy(ctx, cfg, agentclient.DeployOptions{})
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	fmt.Fprintf(out, "   deployed %s\n", strings.Join(res.Deckies, ", "))
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		step(out, "7. tearing everything down")
		if terr := client.Teardown(tctx, ""); terr != nil && err == nil {
			err = fmt.Errorf("teardown: %w", terr)
		}
	}()
	st, err := showStatus(ctx, out, client)
	if err != nil {
		return err
	}
	web, _ := findDecky(st, "web-01")
	if err := showBanner(ctx, out, web.IP, 22); err != nil {
		return err
	}

	step(out, "5. planning a mutation of web-01 to {ssh, smtp} (dry run: nothing changes)")
	plan, err := client.Mutate(ctx, "web-01", []string{"ssh", "smtp"}, agentclient.MutateOptions{DryRun: true})
	if err != nil {
		return fmt.Errorf("mutate dry run: %w", err)
	}
	if plan.Plan != nil {
		fmt.Fprintf(out, "   add %v, remove %v, keep %v\n", plan.Plan.Add, plan.Plan.Remove, plan.Plan.Keep)
	}

	step(out, "6. mutating web-01: only its changed service containers are touched, the base keeps its IP")
	if _, err := client.Mutate(ctx, "web-01", []string{"ssh", "smtp"}, agentclient.MutateOptions{}); err != nil {
		return fmt.Errorf("mutate: %w", err)
	}
	st, err = showStatus(ctx, out, client)
	if err != nil {
		return err
	}
	after, _ := findDecky(st, "web-01")
	if after.IP != web.IP {
		return fmt.Errorf("web-01 changed its IP from %s to %s", web.IP, after.IP)
	}
	return showBanner(ctx, out, after.IP, 25)
}

func step(out io.Writer, msg string) { fmt.Fprintf(out, "\n%s\n", msg) }

// mintIdentities writes the CA, the master's bundle and a worker bundle that
// pins the master, and returns the master's bundle and the worker's directory.
func mintIdentities(dir string) (*pki.Bundle, string, error) {
	ca, err := pki.NewCA(nil)
	if err != nil {
		return nil, "", err
	}
	if err := pki.WriteCA(filepath.Join(dir, "pki", "ca"), ca); err != nil {
		return nil, "", err
	}
	master, err := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster})
	if err != nil {
		return nil, "", err
	}
	if err := pki.WriteBundle(filepath.Join(dir, "pki", "master"), master); err != nil {
		return nil, "", err
	}
	worker, err := ca.NewBundle(pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"127.0.0.1"}})
	if err != nil {
		return nil, "", err
	}
	worker.MasterFingerprint = master.Fingerprint()
	workerDir := filepath.Join(dir, "agent")
	return master, workerDir, pki.WriteBundle(workerDir, worker)
}

// ensureDecoyImage builds the placeholder decoy image from this executable
// unless an image with that tag exists; the returned func removes what it built.
func ensureDecoyImage(ctx context.Context, eng *engine.Engine) (func(), error) {
	exists, err := eng.ImageExists(ctx, decnet.DecoyImage)
	if err != nil {
		return nil, err
	}
	if exists {
		return func() {}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := eng.BuildImage(ctx, engine.ImageSpec{
		Tag:        decnet.DecoyImage,
		Binary:     self,
		Entrypoint: []string{"/" + filepath.Base(self), "decoy"},
		Labels:     map[string]string{"decnet.quickstart": "placeholder"},
	}); err != nil {
		return nil, fmt.Errorf("build %s (is this program a static CGO_ENABLED=0 build?): %w", decnet.DecoyImage, err)
	}
	return func() { _ = eng.RemoveImage(context.Background(), decnet.DecoyImage) }, nil
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

type agentProc struct {
	cmd  *exec.Cmd
	done chan error
	logs *os.File
}

func startAgent(bin, workdir, bundle, addr string, lan netip.Prefix) (*agentProc, error) {
	logs, err := os.Create(filepath.Join(workdir, "agent.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve",
		"--dir", bundle,
		"--listen", addr,
		"--state-dir", filepath.Join(workdir, "state"),
		"--project", project,
		"--network-name", networkName,
		"--subnet", lan.String(),
		"--base-image", pauseImage,
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, err
	}
	p := &agentProc{cmd: cmd, done: make(chan error, 1), logs: logs}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// stop sends SIGTERM (the agent drains and exits 0) and waits.
func (p *agentProc) stop() error {
	defer p.logs.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("decnet-agent exited: %w (log: %s)", err, p.logs.Name())
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("decnet-agent did not stop within 30s of SIGTERM")
	}
}

func waitHealthy(ctx context.Context, c *agentclient.Client, p *agentProc) (decnet.HealthResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		h, err := c.Health(ctx)
		if err == nil {
			return h, nil
		}
		select {
		case perr := <-p.done:
			p.done <- perr
			log, _ := os.ReadFile(p.logs.Name())
			return decnet.HealthResponse{}, fmt.Errorf("decnet-agent exited before answering: %v\n%s", perr, log)
		case <-ctx.Done():
			return decnet.HealthResponse{}, fmt.Errorf("decnet-agent did not answer: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func showStatus(ctx context.Context, out io.Writer, c *agentclient.Client) (decnet.StatusResponse, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	for _, d := range st.Deckies {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(d.Containers)) {
			parts = append(parts, k+"="+d.Containers[k])
		}
		fmt.Fprintf(out, "   %-9s %-15s %-8s running=%-5v %s\n", d.Name, d.IP, d.OS, d.Running, strings.Join(parts, " "))
	}
	return st, nil
}

func findDecky(st decnet.StatusResponse, name string) (decnet.DeckyStatus, bool) {
	for _, d := range st.Deckies {
		if d.Name == name {
			return d, true
		}
	}
	return decnet.DeckyStatus{}, false
}

// showBanner reads the greeting of the service on ip:port (a container this
// program made, on its private bridge).
func showBanner(ctx context.Context, out io.Writer, ip string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	var lastErr error
	for ctx.Err() == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil {
				fmt.Fprintf(out, "   %s says: %s", addr, line)
				return nil
			}
			err = rerr
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no banner from %s: %v", addr, lastErr)
}

// decoy is the placeholder decoy: it listens on the catalog ports of the
// service named by its argument and greets every connection.
func decoy(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: quickstart decoy <service>")
		return 2
	}
	svc, ok := decnet.DefaultCatalog().Lookup(args[0])
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown service %q\n", args[0])
		return 2
	}
	banner := fmt.Sprintf("%s decoy on %s (%s)\n", svc.Name, os.Getenv("HOSTNAME"), os.Getenv("NODE_NAME"))
	for _, p := range svc.Ports {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p.Port)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() { // ends with the process
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, banner)
				c.Close()
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}
