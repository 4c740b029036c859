// Package iothubtopic parses and formats the Azure IoT Hub MQTT device topics
// and their property bags. It is a pure codec: no I/O, no state.
//
// Device→hub topics are classified by Parse; hub→device topics are built by
// TwinResponse, DesiredPatch, MethodRequest and DeviceBound. The device side
// (gateway) builds its own publishes with Telemetry, TwinGet, ReportedPatch and
// MethodResponse. The grammar follows section 1.5/1.6 of the Azure IoT Hub
// notes; modules are not supported.
package iothubtopic

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnsupportedTopic is returned (wrapped with detail) for a topic a device may
// not publish to: another device's topic, an unknown $iothub path, a missing
// $rid, a non-integer status, a module topic, or garbage.
var ErrUnsupportedTopic = errors.New("unsupported topic")

// Subscription filters a device may use. [azure note 1.5]
const (
	FilterTwinResponses  = "$iothub/twin/res/#"
	FilterDesiredPatches = "$iothub/twin/PATCH/properties/desired/#"
	FilterMethodRequests = "$iothub/methods/POST/#"
)

// Topic prefixes and paths of the grammar.
const (
	prefixDevices        = "devices/"
	pathEvents           = "messages/events"
	pathDeviceBound      = "messages/devicebound"
	pathTwinGet          = "$iothub/twin/GET"
	pathReportedPatch    = "$iothub/twin/PATCH/properties/reported"
	pathDesiredPatch     = "$iothub/twin/PATCH/properties/desired"
	prefixMethodResponse = "$iothub/methods/res/"
	prefixMethodRequest  = "$iothub/methods/POST/"
	prefixTwinResponse   = "$iothub/twin/res/"
	paramRID             = "$rid"
	paramVersion         = "$version"
	maxDeviceIDLen       = 128
)

// Kind says what a device→hub publish asks for.
type Kind uint8

// The kinds of device→hub publish.
const (
	KindTelemetry      Kind = iota + 1 // devices/{id}/messages/events/[{bag}]
	KindTwinGet                        // $iothub/twin/GET/?$rid={rid}
	KindReportedPatch                  // $iothub/twin/PATCH/properties/reported/?$rid={rid}
	KindMethodResponse                 // $iothub/methods/res/{status}/?$rid={rid}
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindTelemetry:
		return "telemetry"
	case KindTwinGet:
		return "twin-get"
	case KindReportedPatch:
		return "reported-patch"
	case KindMethodResponse:
		return "method-response"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Request is a classified device→hub publish topic.
type Request struct {
	Kind Kind
	// Props is the telemetry property bag (KindTelemetry only; nil when empty).
	Props Properties
	// RID is the request id exactly as it appeared on the wire (not
	// percent-decoded), so that it can be echoed verbatim. [azure note 1.7]
	RID string
	// Status is the device's status code (KindMethodResponse only).
	Status int
}

// Topic formats the request as the topic deviceID would publish it to.
// Parse(deviceID, r.Topic(deviceID)) returns r again.
func (r Request) Topic(deviceID string) string {
	switch r.Kind {
	case KindTelemetry:
		return Telemetry(deviceID, r.Props)
	case KindTwinGet:
		return TwinGet(r.RID)
	case KindReportedPatch:
		return ReportedPatch(r.RID)
	case KindMethodResponse:
		return MethodResponse(r.Status, r.RID)
	}
	return ""
}

// ValidDeviceID reports whether id is a legal IoT Hub device id: 1–128 ASCII
// letters, digits or one of - . % _ * ? ! ( ) , : = @ $ '. In particular it
// never contains "/", "+" or "#", so it is safe inside topics and filters.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > maxDeviceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte("-.%_*?!(),:=@$'", c) < 0 {
			return false
		}
	}
	return true
}

// Parse classifies a topic that device deviceID published to. Anything but
// the device's own telemetry topic, twin GET, reported patch or method response
// returns an error wrapping ErrUnsupportedTopic.
func Parse(deviceID, topic string) (Request, error) {
	if !ValidDeviceID(deviceID) {
		return Request{}, fmt.Errorf("%w: invalid device id %q", ErrUnsupportedTopic, deviceID)
	}
	switch {
	case strings.HasPrefix(topic, prefixDevices):
		return parseDeviceTopic(deviceID, topic)
	case strings.HasPrefix(topic, "$iothub/"):
		return parseIoTHubTopic(topic)
	}
	return Request{}, fmt.Errorf("%w: %q", ErrUnsupportedTopic, topic)
}

func parseDeviceTopic(deviceID, topic string) (Request, error) {
	id, rest, _ := strings.Cut(topic[len(prefixDevices):], "/")
	if id != deviceID {
		return Request{}, fmt.Errorf("%w: %q belongs to device %q, not %q", ErrUnsupportedTopic, topic, id, deviceID)
	}
	if strings.HasPrefix(rest, "modules/") {
		return Request{}, fmt.Errorf("%w: %q: module topics are not supported", ErrUnsupportedTopic, topic)
	}
	after, ok := strings.CutPrefix(rest, pathEvents)
	if !ok || (after != "" && after[0] != '/') {
		return Request{}, fmt.Errorf("%w: %q", ErrUnsupportedTopic, topic)
	}
	// The bag follows "events/"; some clients write "events/?bag", some end it with "/". [azure note 1.6]
	bag := strings.TrimPrefix(after, "/")
	bag = strings.TrimPrefix(bag, "?")
	bag = strings.TrimSuffix(bag, "/")
	props, err := DecodeProperties(bag)
	if err != nil {
		return Request{}, fmt.Errorf("%w: %q: %w", ErrUnsupportedTopic, topic, err)
	}
	return Request{Kind: KindTelemetry, Props: props}, nil
}

func parseIoTHubTopic(topic string) (Request, error) {
	path, query, _ := strings.Cut(topic, "?")
	path = strings.TrimSuffix(path, "/")
	var r Request
	switch {
	case path == pathTwinGet:
		r.Kind = KindTwinGet
	case path == pathReportedPatch:
		r.Kind = KindReportedPatch
	case strings.HasPrefix(path, prefixMethodResponse):
		status, err := strconv.ParseInt(path[len(prefixMethodResponse):], 10, 32)
		if err != nil {
			return Request{}, fmt.Errorf("%w: %q: status is not an integer", ErrUnsupportedTopic, topic)
		}
		r.Kind, r.Status = KindMethodResponse, int(status)
	default:
		return Request{}, fmt.Errorf("%w: %q", ErrUnsupportedTopic, topic)
	}
	rid, err := requestID(query)
	if err != nil {
		return Request{}, fmt.Errorf("%w: %q: %w", ErrUnsupportedTopic, topic, err)
	}
	r.RID = rid
	return r, nil
}

var (
	errNoRID        = errors.New("missing or empty $rid")
	errDuplicateRID = errors.New("duplicate $rid")
	errBadRID       = errors.New("$rid contains a wildcard or NUL")
)

// requestID finds $rid (the "$" may arrive as %24) in a query. Other
// parameters are ignored. [azure note 0: ignore unknown parameters]
func requestID(query string) (string, error) {
	var rid string
	found := false
	for param := range strings.SplitSeq(query, "&") {
		rawName, value, _ := strings.Cut(param, "=")
		name, err := unescape(rawName)
		if err != nil || name != paramRID {
			continue
		}
		if found {
			return "", errDuplicateRID
		}
		found, rid = true, value
	}
	if rid == "" {
		return "", errNoRID
	}
	if strings.ContainsAny(rid, "#+\x00") {
		return "", errBadRID
	}
	return rid, nil
}

// AllowedPublish reports whether deviceID may publish to topic.
func AllowedPublish(deviceID, topic string) bool {
	_, err := Parse(deviceID, topic)
	return err == nil
}

// AllowedSubscription reports whether deviceID may subscribe to filter: its own
// C2D filter (devices/{id}/messages/devicebound/# or the exact
// devices/{id}/messages/devicebound/), $iothub/twin/res/#,
// $iothub/twin/PATCH/properties/desired/# or $iothub/methods/POST/#, or an
// exact topic inside one of those. Nothing else: no other device, no "+"
// variants, no bare "#". [azure note 1.1, 1.5]
func AllowedSubscription(deviceID, filter string) bool {
	if !ValidDeviceID(deviceID) {
		return false
	}
	switch filter {
	case FilterTwinResponses, FilterDesiredPatches, FilterMethodRequests,
		DeviceBoundFilter(deviceID), deviceBoundBase(deviceID) + "/":
		return true
	}
	// An exact topic (no wildcard) inside one of those spaces names only what
	// the hub would send this device anyway: request/response tools such as
	// mosquitto_rr subscribe to the one reply topic they expect.
	if strings.ContainsAny(filter, "#+") {
		return false
	}
	for _, f := range []string{FilterTwinResponses, FilterDesiredPatches, FilterMethodRequests, DeviceBoundFilter(deviceID)} {
		if strings.HasPrefix(filter, strings.TrimSuffix(f, "#")) {
			return true
		}
	}
	return false
}

// DeviceBoundFilter returns the C2D subscription filter of deviceID.
func DeviceBoundFilter(deviceID string) string { return deviceBoundBase(deviceID) + "/#" }

func deviceBoundBase(deviceID string) string {
	return prefixDevices + deviceID + "/" + pathDeviceBound
}

// Telemetry returns the D2C topic devices/{id}/messages/events/{bag}.
func Telemetry(deviceID string, props Properties) string {
	return prefixDevices + deviceID + "/" + pathEvents + "/" + props.Encode()
}

// DeviceBound returns the C2D topic devices/{id}/messages/devicebound/{bag}.
func DeviceBound(deviceID string, props Properties) string {
	return deviceBoundBase(deviceID) + "/" + props.Encode()
}

// TwinGet returns $iothub/twin/GET/?$rid={rid}.
func TwinGet(rid string) string { return pathTwinGet + "/?" + paramRID + "=" + rid }

// ReportedPatch returns $iothub/twin/PATCH/properties/reported/?$rid={rid}.
func ReportedPatch(rid string) string { return pathReportedPatch + "/?" + paramRID + "=" + rid }

// MethodResponse returns $iothub/methods/res/{status}/?$rid={rid}.
func MethodResponse(status int, rid string) string {
	return prefixMethodResponse + strconv.Itoa(status) + "/?" + paramRID + "=" + rid
}

// TwinResponse returns $iothub/twin/res/{status}/?$rid={rid}, with
// &$version={version} appended when version is not 0 (reported-patch replies).
// rid is written verbatim, as received. [azure note 1.5, 1.7]
func TwinResponse(status int, rid string, version int64) string {
	t := prefixTwinResponse + strconv.Itoa(status) + "/?" + paramRID + "=" + rid
	if version != 0 {
		t += "&" + paramVersion + "=" + strconv.FormatInt(version, 10)
	}
	return t
}

// DesiredPatch returns $iothub/twin/PATCH/properties/desired/?$version={version}.
func DesiredPatch(version int64) string {
	return pathDesiredPatch + "/?" + paramVersion + "=" + strconv.FormatInt(version, 10)
}

// MethodRequest returns $iothub/methods/POST/{name}/?$rid={rid}.
func MethodRequest(name, rid string) string {
	return prefixMethodRequest + name + "/?" + paramRID + "=" + rid
}
