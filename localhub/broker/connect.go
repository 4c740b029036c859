package broker

import (
	"errors"
	"net"
	"strings"
)

// username is a parsed CONNECT username "{host}/{deviceId}[/{moduleId}]/?{query}".
type username struct {
	host, device, module string
}

var errUsername = errors.New(`username is not "{hostname}/{deviceId}/?api-version=..."`)

// parseUsername reads "{host}/{deviceId}[/{moduleId}]/?{query}". The query
// (api-version and anything else) is ignored, and may be missing together with
// the trailing "/" or "?". [azure note 0, 1.2]
func parseUsername(s string) (username, error) {
	path, _, _ := strings.Cut(s, "?")
	path = strings.TrimSuffix(path, "/")
	parts := strings.Split(path, "/")
	var u username
	switch len(parts) {
	case 2:
		u = username{host: parts[0], device: parts[1]}
	case 3:
		u = username{host: parts[0], device: parts[1], module: parts[2]}
	default:
		return username{}, errUsername
	}
	if u.host == "" || u.device == "" || (len(parts) == 3 && u.module == "") {
		return username{}, errUsername
	}
	return u, nil
}

// sameHost compares host names case-insensitively, ignoring any port.
func sameHost(a, b string) bool {
	return strings.EqualFold(stripPort(a), stripPort(b))
}

func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func containsSlash(s string) bool { return strings.IndexByte(s, '/') >= 0 }
