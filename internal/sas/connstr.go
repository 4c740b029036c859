package sas

import (
	"errors"
	"fmt"
	"strings"
)

// ErrConnectionString is returned for connection strings that cannot be used.
var ErrConnectionString = errors.New("invalid connection string")

// ConnectionString is an IoT Hub connection string: a device's
// (HostName;DeviceId;SharedAccessKey) or a service policy's
// (HostName;SharedAccessKeyName;SharedAccessKey).
type ConnectionString struct {
	HostName        string
	DeviceID        string
	ModuleID        string
	KeyName         string
	Key             string
	GatewayHostName string
}

// ParseConnectionString reads "Key=Value;Key=Value". Keys are matched case-insensitively.
func ParseConnectionString(s string) (ConnectionString, error) {
	var cs ConnectionString
	for _, part := range strings.Split(strings.TrimSpace(s), ";") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return cs, fmt.Errorf("%w: %q is not Key=Value", ErrConnectionString, redactPart(part))
		}
		switch strings.ToLower(k) {
		case "hostname":
			cs.HostName = v
		case "deviceid":
			cs.DeviceID = v
		case "moduleid":
			cs.ModuleID = v
		case "sharedaccesskeyname":
			cs.KeyName = v
		case "sharedaccesskey":
			cs.Key = v
		case "gatewayhostname":
			cs.GatewayHostName = v
		}
	}
	if cs.HostName == "" {
		return cs, fmt.Errorf("%w: HostName is missing", ErrConnectionString)
	}
	if cs.Key == "" {
		return cs, fmt.Errorf("%w: SharedAccessKey is missing", ErrConnectionString)
	}
	if cs.DeviceID == "" && cs.KeyName == "" {
		return cs, fmt.Errorf("%w: needs DeviceId (device) or SharedAccessKeyName (service)", ErrConnectionString)
	}
	return cs, nil
}

// String formats the connection string (it contains the key: never log it).
func (cs ConnectionString) String() string {
	var b strings.Builder
	b.WriteString("HostName=" + cs.HostName)
	if cs.DeviceID != "" {
		b.WriteString(";DeviceId=" + cs.DeviceID)
	}
	if cs.ModuleID != "" {
		b.WriteString(";ModuleId=" + cs.ModuleID)
	}
	if cs.KeyName != "" {
		b.WriteString(";SharedAccessKeyName=" + cs.KeyName)
	}
	b.WriteString(";SharedAccessKey=" + cs.Key)
	if cs.GatewayHostName != "" {
		b.WriteString(";GatewayHostName=" + cs.GatewayHostName)
	}
	return b.String()
}

// redactPart keeps error messages free of key material.
func redactPart(p string) string {
	if len(p) > 12 {
		return p[:12] + "…"
	}
	return p
}
