// Package sdnotify tells systemd about a service's state through the
// datagram socket named in $NOTIFY_SOCKET (Type=notify units): "READY=1"
// once the service is up, "STOPPING=1" when it begins to shut down. See
// sd_notify(3); this is the whole protocol a Go daemon needs, without cgo
// or libsystemd.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// States sent by Drover's daemons.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket in $NOTIFY_SOCKET. It reports false
// (and no error) when the variable is unset: not started by systemd, or
// by a unit that is not Type=notify.
func Notify(state string) (bool, error) {
	return notify(os.Getenv("NOTIFY_SOCKET"), state)
}

func notify(socket, state string) (bool, error) {
	if socket == "" {
		return false, nil
	}
	name := socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:] // abstract namespace [sd_notify(3): "@" prefix]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: dial %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: send %q to %s: %w", state, socket, err)
	}
	return true, nil
}
