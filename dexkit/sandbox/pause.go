// The node sandbox's pod sandbox ("pause") process, dexkit's own: no registry is reachable here,
// so the image the kubelet asks containerd to hold a pod's namespaces with is built from this.
//
// It does what a pause process must and nothing else: it sleeps, reaps the zombies of a pod
// that shares its PID namespace (it is PID 1 there), and exits 0 on SIGINT or SIGTERM, which is
// how the runtime stops a pod sandbox. Built with CGO_ENABLED=0, so the binary is static and the
// image needs no libc.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
