package iothubtopic

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range catalogue {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.device, tc.raw)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q, %q) = %+v, want error", tc.device, tc.raw, got)
				}
				if !errors.Is(err, ErrUnsupportedTopic) {
					t.Fatalf("Parse(%q, %q) error %v does not wrap ErrUnsupportedTopic", tc.device, tc.raw, err)
				}
				if AllowedPublish(tc.device, tc.raw) {
					t.Fatalf("AllowedPublish(%q, %q) = true", tc.device, tc.raw)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q, %q): %v", tc.device, tc.raw, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Parse(%q, %q) =\n %+v\nwant\n %+v", tc.device, tc.raw, got, tc.want)
			}
			if !AllowedPublish(tc.device, tc.raw) {
				t.Fatalf("AllowedPublish(%q, %q) = false", tc.device, tc.raw)
			}
		})
	}
}

func TestFormatRequest(t *testing.T) {
	for _, tc := range catalogue {
		if tc.wantErr {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			topic := tc.want.Topic(tc.device)
			if tc.canonical && topic != tc.raw {
				t.Fatalf("Topic(%+v) = %q, want %q", tc.want, topic, tc.raw)
			}
			// Every decodable case formats to a topic that decodes to the same value.
			back, err := Parse(tc.device, topic)
			if err != nil {
				t.Fatalf("Parse(Topic(%+v)) = %q: %v", tc.want, topic, err)
			}
			if !reflect.DeepEqual(back, tc.want) {
				t.Fatalf("round trip of %q gave %+v, want %+v", topic, back, tc.want)
			}
		})
	}
}

func TestHubTopics(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"twin response get", TwinResponse(200, "42", 0), "$iothub/twin/res/200/?$rid=42"},
		{"twin response patch", TwinResponse(204, "42", 7), "$iothub/twin/res/204/?$rid=42&$version=7"},
		{"twin response error", TwinResponse(400, "x", 0), "$iothub/twin/res/400/?$rid=x"},
		{"twin response rid verbatim", TwinResponse(200, "a%20b", 0), "$iothub/twin/res/200/?$rid=a%20b"},
		{"desired patch", DesiredPatch(13), "$iothub/twin/PATCH/properties/desired/?$version=13"},
		{"method request", MethodRequest("reboot", "r1"), "$iothub/methods/POST/reboot/?$rid=r1"},
		{"telemetry empty", Telemetry("d", nil), "devices/d/messages/events/"},
		{"telemetry slash encoded", Telemetry("d", Properties{{Name: "$.to", Value: "/devices/d"}}),
			"devices/d/messages/events/%24.to=%2Fdevices%2Fd"},
		{"devicebound null and empty", DeviceBound("d", Properties{{Name: "n", NoValue: true}, {Name: "e"}, {Name: "v", Value: "a&b=c"}}),
			"devices/d/messages/devicebound/n&e=&v=a%26b%3Dc"},
		{"devicebound filter", DeviceBoundFilter("d"), "devices/d/messages/devicebound/#"},
		{"twin get", TwinGet("1"), "$iothub/twin/GET/?$rid=1"},
		{"reported patch", ReportedPatch("1"), "$iothub/twin/PATCH/properties/reported/?$rid=1"},
		{"method response", MethodResponse(500, "1"), "$iothub/methods/res/500/?$rid=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestAllowedSubscription(t *testing.T) {
	tests := []struct {
		name   string
		device string
		filter string
		want   bool
	}{
		{"own c2d", dev, "devices/dev1/messages/devicebound/#", true},
		{"own c2d exact", dev, "devices/dev1/messages/devicebound/", true},
		{"twin res", dev, "$iothub/twin/res/#", true},
		{"desired", dev, "$iothub/twin/PATCH/properties/desired/#", true},
		{"methods", dev, "$iothub/methods/POST/#", true},
		{"other c2d", dev, "devices/dev2/messages/devicebound/#", false},
		{"c2d plus", dev, "devices/+/messages/devicebound/#", false},
		{"hash", dev, "#", false},
		{"iothub hash", dev, "$iothub/#", false},
		{"twin res plus", dev, "$iothub/twin/res/+/#", false},
		{"methods plus", dev, "$iothub/methods/POST/+", false},
		{"own events", dev, "devices/dev1/messages/events/#", false},
		{"sys", dev, "$SYS/#", false},
		{"empty filter", dev, "", false},
		{"wildcard device id", "+", "devices/+/messages/devicebound/#", false},
		{"hash device id", "#", "devices/#/messages/devicebound/#", false},
		{"empty device id", "", "devices//messages/devicebound/#", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := AllowedSubscription(tc.device, tc.filter); got != tc.want {
				t.Fatalf("AllowedSubscription(%q, %q) = %v, want %v", tc.device, tc.filter, got, tc.want)
			}
		})
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"pump-1", true}, {"a.b_c%d*e?f!g(h),i:j=k@l$m'n", true}, {strings.Repeat("a", 128), true},
		{"", false}, {strings.Repeat("a", 129), false}, {"a/b", false}, {"a+b", false}, {"a#b", false},
		{"a b", false}, {"ä", false}, {"a\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			if got := ValidDeviceID(tc.id); got != tc.want {
				t.Fatalf("ValidDeviceID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindTelemetry: "telemetry", KindTwinGet: "twin-get",
		KindReportedPatch: "reported-patch", KindMethodResponse: "method-response", 0: "kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
