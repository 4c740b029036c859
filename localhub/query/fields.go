package query

import (
	"fmt"
	"strings"
)

// This file binds property paths of FROM devices to columns of the devices
// table (../store/schema.sql). It is the only file that knows column names.

// deviceFields maps a lower-cased top-level twin field to its canonical
// name and resolver [IoT Hub device twin JSON, "Twin document structure"].
// Top-level names match case-insensitively; keys below tags and properties
// are case-sensitive.
var deviceFields = map[string]struct {
	name    string
	resolve func(rest []Segment) value
}{
	"deviceid":                   {"deviceId", textCol("device_id")},
	"etag":                       {"etag", textCol("twin_etag")},
	"deviceetag":                 {"deviceEtag", textCol("etag")},
	"version":                    {"version", numCol("twin_version")},
	"status":                     {"status", textCol("status")},
	"statusreason":               {"statusReason", textCol("status_reason")},
	"statusupdatetime":           {"statusUpdateTime", textCol("status_updated")},
	"connectionstate":            {"connectionState", textCol("connection_state")},
	"connectionstateupdatedtime": {"connectionStateUpdatedTime", textCol("connection_state_updated")},
	"lastactivitytime":           {"lastActivityTime", textCol("last_activity")},
	"cloudtodevicemessagecount":  {"cloudToDeviceMessageCount", numCol("c2d_count")},
	"authenticationtype":         {"authenticationType", textCol("auth_type")},
	"modelid":                    {"modelId", textCol("model_id")},
	"devicescope":                {"deviceScope", textCol("device_scope")},
	"parentscopes":               {"parentScopes", jsonCol("parent_scopes")},
	"tags":                       {"tags", jsonCol("tags")},
	"capabilities":               {"capabilities", resolveCapabilities},
	"x509thumbprint":             {"x509Thumbprint", resolveThumbprints},
	"properties":                 {"properties", resolveProperties},
}

// resolveDevicePath compiles a path over FROM devices. The returned value's
// key is the canonical name of the last segment.
func resolveDevicePath(p *Path) (value, error) {
	head := p.Segments[0]
	f, ok := deviceFields[strings.ToLower(head.Name)]
	if !ok || head.IsIndex {
		return value{}, errAt(head.Pos, fmt.Sprintf("unknown property %q", head.Name))
	}
	v := f.resolve(p.Segments[1:])
	switch last := p.Segments[len(p.Segments)-1]; {
	case len(p.Segments) == 1:
		v.key = f.name
	case v.key == "" && !last.IsIndex:
		v.key = last.Name
	}
	return v, nil
}

// textCol is a string column; it has no sub-properties.
func textCol(col string) func([]Segment) value {
	return func(rest []Segment) value {
		if len(rest) > 0 {
			return undef
		}
		return value{cls: cStr, val: col, nonNull: true}
	}
}

// numCol is an integer column; it has no sub-properties.
func numCol(col string) func([]Segment) value {
	return func(rest []Segment) value {
		if len(rest) > 0 {
			return undef
		}
		return value{cls: cNum, val: col, nonNull: true}
	}
}

// jsonCol is a column holding a JSON document.
func jsonCol(col string) func([]Segment) value {
	return func(rest []Segment) value { return docPath(col, rest) }
}

// object is a composite value built by SQL that yields a JSON object.
func object(js string) value {
	return value{cls: cDyn, val: js, typ: "'object'", js: js}
}

// structural reports whether seg is the name want, case-insensitively.
func structural(seg Segment, want string) bool {
	return !seg.IsIndex && strings.EqualFold(seg.Name, want)
}

func resolveCapabilities(rest []Segment) value {
	const iotEdge = "(CASE WHEN iot_edge THEN 'true' ELSE 'false' END)"
	switch {
	case len(rest) == 0:
		return object("json_object('iotEdge', json(" + iotEdge + "))")
	case len(rest) == 1 && structural(rest[0], "iotEdge"):
		return value{cls: cBool, val: "iot_edge", truth: "(iot_edge <> 0)", falsity: "(iot_edge = 0)",
			nonNull: true, key: "iotEdge"}
	}
	return undef
}

// resolveThumbprints maps x509Thumbprint; an empty column is JSON null, as
// on a SAS-authenticated device.
func resolveThumbprints(rest []Segment) value {
	thumb := func(col, key string) value {
		return value{
			cls: cDyn,
			val: "nullif(" + col + ", '')",
			typ: "(CASE WHEN " + col + " = '' THEN 'null' ELSE 'text' END)",
			js:  "(CASE WHEN " + col + " = '' THEN 'null' ELSE json_quote(" + col + ") END)",
			key: key,
		}
	}
	switch {
	case len(rest) == 0:
		return object("json_object('primaryThumbprint', nullif(primary_thumbprint, ''), " +
			"'secondaryThumbprint', nullif(secondary_thumbprint, ''))")
	case len(rest) == 1 && structural(rest[0], "primaryThumbprint"):
		return thumb("primary_thumbprint", "primaryThumbprint")
	case len(rest) == 1 && structural(rest[0], "secondaryThumbprint"):
		return thumb("secondary_thumbprint", "secondaryThumbprint")
	}
	return undef
}

// section is one of properties.desired or properties.reported.
type section struct {
	name, doc, meta, version string
}

var sections = []section{
	{"desired", "desired", "desired_meta", "desired_version"},
	{"reported", "reported", "reported_meta", "reported_version"},
}

// sectionJSON rebuilds the section as the twin shows it, with $metadata and
// $version.
func sectionJSON(s section) string {
	return "json_insert(" + s.doc + `, '$."$metadata"', json(` + s.meta + `), '$."$version"', ` + s.version + ")"
}

func resolveProperties(rest []Segment) value {
	if len(rest) == 0 {
		return object("json_object('desired', " + sectionJSON(sections[0]) +
			", 'reported', " + sectionJSON(sections[1]) + ")")
	}
	for _, s := range sections {
		if structural(rest[0], s.name) {
			return resolveSection(s, rest[1:])
		}
	}
	return undef
}

// resolveSection maps properties.<section>.<rest>: $version is a column,
// $metadata.<path> reads the metadata document, anything else the section.
func resolveSection(s section, rest []Segment) value {
	switch {
	case len(rest) == 0:
		v := object(sectionJSON(s))
		v.key = s.name
		return v
	case structural(rest[0], "$version"):
		if len(rest) > 1 {
			return undef
		}
		return value{cls: cNum, val: s.version, nonNull: true, key: "$version"}
	case structural(rest[0], "$metadata"):
		segs := make([]Segment, len(rest)-1)
		for i, seg := range rest[1:] {
			// Twin keys cannot contain '$', so these are always the
			// system entries; accept them in any case.
			switch {
			case structural(seg, "$lastUpdated"):
				seg.Name = "$lastUpdated"
			case structural(seg, "$lastUpdatedVersion"):
				seg.Name = "$lastUpdatedVersion"
			}
			segs[i] = seg
		}
		v := docPath(s.meta, segs)
		if len(segs) == 0 {
			v.key = "$metadata"
		} else if last := segs[len(segs)-1]; !last.IsIndex {
			v.key = last.Name
		}
		return v
	}
	return docPath(s.doc, rest)
}
