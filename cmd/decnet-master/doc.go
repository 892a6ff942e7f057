// Command decnet-master is the reference master of a decnet swarm.
//
// For now it carries the operator's offline PKI tools; the master server
// (decnet-master serve) lands with the swarm controller.
//
//	decnet-master ca init --dir DIR [--san ADDR]...
//	    Create the swarm CA in DIR/ca and the master's identity
//	    (CN decnet-master, role decnet-master) in DIR/master.
//	decnet-master ca issue --dir DIR --name NAME --out-dir OUT [--role worker|master|operator] [--san ADDR]...
//	    Write a bundle (ca.crt, tls.crt, tls.key, and for a worker
//	    master.fingerprint pinning DIR/master, or a warning on stderr when
//	    DIR/master holds no certificate) to OUT and print its fingerprint.
//	decnet-master ca fingerprint FILE
//	    Print the SHA-256 fingerprint of a PEM certificate.
//	decnet-master version
//
// Exit codes: 0 success; 1 the command failed (including a refusal to
// overwrite an existing CA or bundle); 2 bad flags, arguments or input, or a
// missing input file. Every failure is one line on stderr; a rejected
// request (exit 2, or a refusal to overwrite) writes nothing.
package main
