// Command pause is lakehub's sandbox ("pause") program for the one-node test cluster.
//
// containerd starts it as the first process of every pod so that the pod's namespaces
// have an owner. It does nothing but wait: SIGTERM or SIGINT ends it with status 0, and
// when it runs as PID 1 of a shared process namespace it collects exited children so no
// zombie is left. It is built static (CGO_ENABLED=0) and is the only file of its image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every child that has already exited, without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
