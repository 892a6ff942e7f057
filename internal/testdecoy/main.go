// Command testdecoy is the tiny static program the Docker tests run in their
// images (built FROM scratch by internal/dockertest, nothing pulled).
//
//	testdecoy pause              sleep until SIGTERM/SIGINT, reaping children
//	testdecoy <service> [port…]  listen on TCP ports (the arguments, else
//	                             $DECOY_PORTS, comma separated) and greet every
//	                             connection with "<service> <NODE_NAME> <HOSTNAME>\n"
//
// Both modes exit 0 on SIGTERM or SIGINT, so containers stop at once.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testdecoy pause | testdecoy <service> [port...]")
		os.Exit(2)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	if os.Args[1] == "pause" {
		pause(sig)
		return
	}
	if err := serve(os.Args[1], ports(os.Args[2:]), sig); err != nil {
		fmt.Fprintln(os.Stderr, "testdecoy:", err)
		os.Exit(1)
	}
}

func ports(args []string) []string {
	if len(args) > 0 {
		return args
	}
	var out []string
	for _, p := range strings.Split(os.Getenv("DECOY_PORTS"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pause waits for a terminating signal, reaping exited children meanwhile
// (it may be PID 1 of the decky's namespace).
func pause(sig chan os.Signal) {
	for s := range sig {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		return
	}
}

func serve(service string, ports []string, sig chan os.Signal) error {
	banner := fmt.Sprintf("%s %s %s\n", service, os.Getenv("NODE_NAME"), os.Getenv("HOSTNAME"))
	var lns []net.Listener
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(banner))
				_ = c.Close()
			}
		}()
	}
	for s := range sig {
		if s != syscall.SIGCHLD {
			break
		}
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	wg.Wait()
	return nil
}
