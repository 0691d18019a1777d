package serving

import (
	"fmt"
	"net"
	"net/netip"
)

// FlagExposeUnauthenticated is the flag of `infergate serve` and
// `infergate gateway` that sets Options.ExposeUnauthenticated; errors
// name it.
const FlagExposeUnauthenticated = "-insecure-listen-anywhere"

// checkExposure refuses, unless the requests are authenticated or the
// operator said otherwise (allowed), a listener reachable from beyond this
// machine: with no credential to check, anyone who reaches a front door
// may call every model, and anyone who reaches the admin port may read
// /metrics and the models' runtime logs.
func checkExposure(authenticated, allowed bool, lns map[string]net.Addr) error {
	if authenticated || allowed {
		return nil
	}
	for _, port := range []string{"REST", "gRPC", "admin"} {
		addr, ok := lns[port]
		if !ok || loopbackAddr(addr) {
			continue
		}
		return fmt.Errorf("the %s port listens on %s, beyond loopback, and no authentication is configured: "+
			"anyone who reaches it could call every model%s. Configure API keys or JWT (see the README's Production section), "+
			"listen on 127.0.0.1, or pass %s to accept that", port, addr, adminExposure(port), FlagExposeUnauthenticated)
	}
	return nil
}

func adminExposure(port string) string {
	if port == "admin" {
		return ", read /metrics and the models' runtime logs"
	}
	return ""
}

// loopbackAddr reports whether a listener's address accepts connections
// from this machine only: a TCP address on 127.0.0.0/8 or ::1, or a Unix
// socket. An unspecified address (0.0.0.0, ::) listens on every
// interface.
func loopbackAddr(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ok && ip.Unmap().IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}
