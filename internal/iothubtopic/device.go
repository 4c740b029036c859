package iothubtopic

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrHubTopic is returned (wrapped with detail) by the hub→device parsers
// ParseTwinResponse, ParseDesiredPatch and ParseMethodRequest for a topic they
// cannot read: another path, a missing or empty $rid, a non-integer status or
// $version, an empty method name.
var ErrHubTopic = errors.New("malformed hub-to-device topic")

// ParseTwinResponse reads $iothub/twin/res/{status}/?$rid={rid}[&$version={v}],
// the hub's answer to a twin GET or reported patch. rid is returned exactly as
// it appeared (not percent-decoded), as TwinGet and ReportedPatch wrote it.
// version is 0 when the topic has no $version (GET replies, errors).
// [azure note 1.5, 1.7]
func ParseTwinResponse(topic string) (status int, rid string, version int64, err error) {
	path, query, _ := strings.Cut(topic, "?")
	rest, ok := strings.CutPrefix(strings.TrimSuffix(path, "/"), prefixTwinResponse)
	if !ok {
		return 0, "", 0, fmt.Errorf("%w: %q is not a twin response", ErrHubTopic, topic)
	}
	status, err = parseStatus(rest)
	if err != nil {
		return 0, "", 0, fmt.Errorf("%w: %q: %w", ErrHubTopic, topic, err)
	}
	if rid, err = requestID(query); err != nil {
		return 0, "", 0, fmt.Errorf("%w: %q: %w", ErrHubTopic, topic, err)
	}
	if version, err = versionParam(query); err != nil {
		return 0, "", 0, fmt.Errorf("%w: %q: %w", ErrHubTopic, topic, err)
	}
	return status, rid, version, nil
}

// ParseDesiredPatch reads $iothub/twin/PATCH/properties/desired/?$version={v},
// a desired-property notification. version is 0 when the topic carries no
// $version; the body's "$version" is the authoritative one. [azure note 1.5]
func ParseDesiredPatch(topic string) (version int64, err error) {
	path, query, _ := strings.Cut(topic, "?")
	if strings.TrimSuffix(path, "/") != pathDesiredPatch {
		return 0, fmt.Errorf("%w: %q is not a desired-property notification", ErrHubTopic, topic)
	}
	if version, err = versionParam(query); err != nil {
		return 0, fmt.Errorf("%w: %q: %w", ErrHubTopic, topic, err)
	}
	return version, nil
}

// ParseMethodRequest reads $iothub/methods/POST/{name}/?$rid={rid}, a direct
// method call. name is percent-decoded; rid is kept as it appeared, to be
// echoed verbatim in MethodResponse. [azure note 1.8]
func ParseMethodRequest(topic string) (name, rid string, err error) {
	path, query, _ := strings.Cut(topic, "?")
	rest, ok := strings.CutPrefix(strings.TrimSuffix(path, "/"), prefixMethodRequest)
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not a method request", ErrHubTopic, topic)
	}
	if rest == "" || strings.ContainsAny(rest, "/#+\x00") {
		return "", "", fmt.Errorf("%w: %q: empty or malformed method name", ErrHubTopic, topic)
	}
	if name, err = unescape(rest); err != nil {
		return "", "", fmt.Errorf("%w: %q: method name: %w", ErrHubTopic, topic, err)
	}
	if rid, err = requestID(query); err != nil {
		return "", "", fmt.Errorf("%w: %q: %w", ErrHubTopic, topic, err)
	}
	return name, rid, nil
}

var (
	errBadStatus         = errors.New("status is not an integer")
	errBadVersion        = errors.New("$version is not a non-negative integer")
	errDuplicateVersion  = errors.New("duplicate $version")
	errVersionOutOfRange = errors.New("$version out of range")
)

// Length bounds that keep garbage out of strconv.
const (
	maxStatusLen     = 11 // "-2147483648"
	maxVersionDigits = 19 // int64
)

func parseStatus(s string) (int, error) {
	if s == "" || len(s) > maxStatusLen {
		return 0, errBadStatus
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, errBadStatus
	}
	return int(n), nil
}

// versionParam finds $version (the "$" may arrive as %24) in a query; 0 when absent.
func versionParam(query string) (int64, error) {
	var v int64
	found := false
	for param := range strings.SplitSeq(query, "&") {
		rawName, value, _ := strings.Cut(param, "=")
		name, err := unescape(rawName)
		if err != nil || name != paramVersion {
			continue
		}
		if found {
			return 0, errDuplicateVersion
		}
		found = true
		if value == "" || len(value) > maxVersionDigits || strings.HasPrefix(value, "+") {
			return 0, errBadVersion
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return 0, errVersionOutOfRange
			}
			return 0, errBadVersion
		}
		if n < 0 {
			return 0, errBadVersion
		}
		v = n
	}
	return v, nil
}
