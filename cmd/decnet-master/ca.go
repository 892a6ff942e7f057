package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/internal/cli"
)

// Layout of a master PKI directory (ca init --dir DIR).
const (
	caSubdir     = "ca"     // DIR/ca: ca.crt, ca.key
	masterSubdir = "master" // DIR/master: the master's own bundle
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Offline certificate authority tools",
		Long: "Create the swarm CA and the master's identity, issue bundles for copying by hand, " +
			"and print certificate fingerprints.",
		Args: cli.NoSubcommand,
		RunE: cli.HelpWhenBare,
	}
	cmd.AddCommand(newCAInitCmd(), newCAIssueCmd(), newCAFingerprintCmd())
	return cmd
}

func newCAInitCmd() *cobra.Command {
	var dir string
	var sans []string
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create the swarm CA (DIR/ca) and the master's identity (DIR/master)",
		Long: "Creates a new swarm CA in DIR/ca (ca.crt, ca.key) and the master's identity, " +
			"CN decnet-master with role decnet-master, in DIR/master (ca.crt, tls.crt, tls.key). " +
			"Refuses to overwrite an existing CA or master identity.",
		Args: cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return cli.Usagef("--dir is required")
			}
			req := pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster, SANs: sans}
			if err := req.Validate(); err != nil {
				return err
			}
			caDir, masterDir := filepath.Join(dir, caSubdir), filepath.Join(dir, masterSubdir)
			for _, p := range []string{filepath.Join(caDir, pki.CACertFile), filepath.Join(caDir, pki.CAKeyFile)} {
				if _, err := os.Lstat(p); err == nil {
					return decnet.Errorf(decnet.ErrConflict, "ca", caDir, "a CA already exists in %s; refusing to overwrite it", caDir)
				}
			}
			if pki.BundleExists(masterDir) {
				return decnet.Errorf(decnet.ErrConflict, "bundle", masterDir, "an identity already exists in %s; refusing to overwrite it", masterDir)
			}
			ca, err := pki.NewCA(nil)
			if err != nil {
				return err
			}
			master, err := ca.NewBundle(req)
			if err != nil {
				return err
			}
			if err := pki.WriteCA(caDir, ca); err != nil {
				return err
			}
			if err := pki.WriteBundle(masterDir, master); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ca: %s (fingerprint %s)\nmaster: %s (fingerprint %s)\n",
				caDir, pki.Fingerprint(ca.Cert), masterDir, master.Fingerprint())
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "master PKI directory (created 0700)")
	cmd.Flags().StringArrayVar(&sans, "san", nil, "extra IP address or DNS name for the master's certificate (repeatable)")
	return cmd
}

func newCAIssueCmd() *cobra.Command {
	var dir, roleName, name, outDir string
	var sans []string
	cmd := &cobra.Command{
		Use:   "issue --dir DIR --name NAME --out-dir OUT [--role worker] [--san ADDR]...",
		Short: "Issue an identity bundle for copying by hand",
		Long: "Generates a key, issues a certificate for it from the CA in DIR/ca and writes the bundle " +
			"(ca.crt, tls.crt, tls.key; for a worker also master.fingerprint, pinning DIR/master, with a warning " +
			"when DIR/master holds no certificate) to OUT, " +
			"then prints the certificate's fingerprint. Names reserved for roles cannot be issued to workers. " +
			"Nothing is written when the request is rejected or OUT already holds a bundle.",
		Args: cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case dir == "":
				return cli.Usagef("--dir is required")
			case name == "":
				return cli.Usagef("--name is required")
			case outDir == "":
				return cli.Usagef("--out-dir is required")
			}
			role, err := pki.ParseRole(roleName)
			if err != nil {
				return err
			}
			req := pki.IssueRequest{Name: name, Role: role, SANs: sans}
			if err := req.Validate(); err != nil {
				return err
			}
			if pki.BundleExists(outDir) {
				return decnet.Errorf(decnet.ErrConflict, "bundle", outDir, "%s already holds a bundle; refusing to overwrite it", outDir)
			}
			ca, err := pki.LoadCA(filepath.Join(dir, caSubdir))
			if err != nil {
				return err
			}
			var masterFP string
			if role == pki.RoleWorker {
				masterCert := filepath.Join(dir, masterSubdir, pki.CertFile)
				switch c, err := pki.LoadCertFile(masterCert); {
				case err == nil:
					masterFP = pki.Fingerprint(c)
				case errors.Is(err, decnet.ErrNotFound):
					// Still issued, but the operator must know that the agent
					// will accept any master certificate of the CA.
					fmt.Fprintf(cmd.ErrOrStderr(), "decnet-master: warning: %s is missing: the bundle does not pin the master\n", masterCert)
				default:
					return err
				}
			}
			b, err := ca.NewBundle(req)
			if err != nil {
				return err
			}
			b.MasterFingerprint = masterFP
			if err := pki.WriteBundle(outDir, b); err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), b.Fingerprint())
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "master PKI directory (as given to ca init)")
	cmd.Flags().StringVar(&roleName, "role", "worker", "role of the identity: worker, master or operator")
	cmd.Flags().StringVar(&name, "name", "", "name (certificate CN): a lowercase DNS label")
	cmd.Flags().StringArrayVar(&sans, "san", nil, "IP address or DNS name the identity is reached at (repeatable)")
	cmd.Flags().StringVar(&outDir, "out-dir", "", "directory to write the bundle to (created 0700)")
	return cmd
}

func newCAFingerprintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fingerprint FILE",
		Short: "Print the SHA-256 fingerprint of a PEM certificate",
		Args:  cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := pki.LoadCertFile(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), pki.Fingerprint(c))
			return err
		},
	}
}
