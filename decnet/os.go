package decnet

import "maps"

// OSFamily selects the network-stack fingerprint a decky presents.
type OSFamily string

const (
	OSLinux    OSFamily = "linux"
	OSWindows  OSFamily = "windows"
	OSBSD      OSFamily = "bsd"
	OSEmbedded OSFamily = "embedded"
)

// OSFamilies lists the known families in a stable order.
var OSFamilies = []OSFamily{OSLinux, OSWindows, OSBSD, OSEmbedded}

// The profiles set the namespaced net.ipv4 sysctls that active OS
// fingerprinting (nmap -O, p0f) reads: initial TTL, TCP timestamps, window
// scaling, SACK, ECN, FIN timeout and the ICMP rate limit.
var sysctlProfiles = map[OSFamily]map[string]string{
	OSLinux: {
		"net.ipv4.ip_default_ttl":     "64",
		"net.ipv4.tcp_timestamps":     "1",
		"net.ipv4.tcp_window_scaling": "1",
		"net.ipv4.tcp_sack":           "1",
		"net.ipv4.tcp_ecn":            "2",
		"net.ipv4.tcp_fin_timeout":    "60",
		"net.ipv4.icmp_ratelimit":     "1000",
	},
	OSWindows: {
		"net.ipv4.ip_default_ttl":     "128",
		"net.ipv4.tcp_timestamps":     "0",
		"net.ipv4.tcp_window_scaling": "1",
		"net.ipv4.tcp_sack":           "1",
		"net.ipv4.tcp_ecn":            "0",
		"net.ipv4.tcp_fin_timeout":    "30",
		"net.ipv4.icmp_ratelimit":     "0",
	},
	OSBSD: {
		"net.ipv4.ip_default_ttl":     "64",
		"net.ipv4.tcp_timestamps":     "1",
		"net.ipv4.tcp_window_scaling": "1",
		"net.ipv4.tcp_sack":           "1",
		"net.ipv4.tcp_ecn":            "0",
		"net.ipv4.tcp_fin_timeout":    "60",
		"net.ipv4.icmp_ratelimit":     "250",
	},
	OSEmbedded: {
		"net.ipv4.ip_default_ttl":     "255",
		"net.ipv4.tcp_timestamps":     "0",
		"net.ipv4.tcp_window_scaling": "0",
		"net.ipv4.tcp_sack":           "0",
		"net.ipv4.tcp_ecn":            "0",
		"net.ipv4.tcp_fin_timeout":    "15",
		"net.ipv4.icmp_ratelimit":     "0",
	},
}

// SysctlProfile returns a fresh copy of the sysctls for family (an empty
// family means linux). ok is false for an unknown family.
func SysctlProfile(family OSFamily) (profile map[string]string, ok bool) {
	if family == "" {
		family = OSLinux
	}
	p, ok := sysctlProfiles[family]
	return maps.Clone(p), ok
}
