package iothubtopic

// topicCase is one entry of the shared case catalogue: a raw device→hub topic,
// the Request it decodes to, and whether Request.Topic formats back to exactly
// raw (canonical). Malformed topics carry wantErr instead of want.
type topicCase struct {
	name      string
	device    string
	raw       string
	want      Request
	canonical bool // Topic(want) == raw
	wantErr   bool
}

const dev = "dev1"

// catalogue is used by the parse, format and fuzz-seed tests alike.
var catalogue = []topicCase{
	// Telemetry. [azure note 1.5, 1.6]
	{name: "telemetry no bag", device: dev, raw: "devices/dev1/messages/events/",
		want: Request{Kind: KindTelemetry}, canonical: true},
	{name: "telemetry no trailing slash", device: dev, raw: "devices/dev1/messages/events",
		want: Request{Kind: KindTelemetry}},
	{name: "telemetry node example", device: dev,
		raw: "devices/dev1/messages/events/%24.mid=abc&%24.ct=application%2Fjson&temp=22",
		want: Request{Kind: KindTelemetry, Props: Properties{
			{Name: SysMessageID, Value: "abc"}, {Name: SysContentType, Value: "application/json"}, {Name: "temp", Value: "22"},
		}}, canonical: true},
	{name: "telemetry raw dollar", device: dev, raw: "devices/dev1/messages/events/$.ce=utf-8&$.cid=c1",
		want: Request{Kind: KindTelemetry, Props: Properties{
			{Name: SysContentEncoding, Value: "utf-8"}, {Name: SysCorrelationID, Value: "c1"},
		}}},
	{name: "telemetry leading question mark", device: dev, raw: "devices/dev1/messages/events/?prop1&prop2=&prop3=a%20string",
		want: Request{Kind: KindTelemetry, Props: Properties{
			{Name: "prop1", NoValue: true}, {Name: "prop2"}, {Name: "prop3", Value: "a string"},
		}}},
	{name: "telemetry bag with trailing slash", device: dev, raw: "devices/dev1/messages/events/a=1/",
		want: Request{Kind: KindTelemetry, Props: Properties{{Name: "a", Value: "1"}}}},
	{name: "telemetry all system props", device: dev,
		raw: "devices/dev1/messages/events/%24.mid=m&%24.cid=c&%24.ct=text%2Fplain&%24.ce=utf-8&%24.uid=u&%24.to=%2Fdevices%2Fdev1&%24.exp=2030-01-01T00%3A00%3A00Z&%24.ctime=2024-01-01T00%3A00%3A00.000Z",
		want: Request{Kind: KindTelemetry, Props: Properties{
			{Name: "$.mid", Value: "m"}, {Name: "$.cid", Value: "c"}, {Name: "$.ct", Value: "text/plain"},
			{Name: "$.ce", Value: "utf-8"}, {Name: "$.uid", Value: "u"}, {Name: "$.to", Value: "/devices/dev1"},
			{Name: "$.exp", Value: "2030-01-01T00:00:00Z"}, {Name: "$.ctime", Value: "2024-01-01T00:00:00.000Z"},
		}}, canonical: true},
	{name: "telemetry empty members skipped", device: dev, raw: "devices/dev1/messages/events/a=1&&b=2",
		want: Request{Kind: KindTelemetry, Props: Properties{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}},
	{name: "telemetry plus kept", device: dev, raw: "devices/dev1/messages/events/a=1+2",
		want: Request{Kind: KindTelemetry, Props: Properties{{Name: "a", Value: "1+2"}}}},
	{name: "telemetry unicode value", device: dev, raw: "devices/dev1/messages/events/t=%C2%B0C",
		want: Request{Kind: KindTelemetry, Props: Properties{{Name: "t", Value: "°C"}}}, canonical: true},
	{name: "telemetry device id with specials", device: "a-b.c:d@e", raw: "devices/a-b.c:d@e/messages/events/",
		want: Request{Kind: KindTelemetry}, canonical: true},

	// Twin. [azure note 1.5, 1.7]
	{name: "twin get", device: dev, raw: "$iothub/twin/GET/?$rid=42", want: Request{Kind: KindTwinGet, RID: "42"}, canonical: true},
	{name: "twin get uuid rid", device: dev, raw: "$iothub/twin/GET/?$rid=4f1c9a4e-7b2d-4c55-9d1e-2f3a4b5c6d7e",
		want: Request{Kind: KindTwinGet, RID: "4f1c9a4e-7b2d-4c55-9d1e-2f3a4b5c6d7e"}, canonical: true},
	{name: "twin get encoded dollar", device: dev, raw: "$iothub/twin/GET/?%24rid=7", want: Request{Kind: KindTwinGet, RID: "7"}},
	{name: "twin get no slash", device: dev, raw: "$iothub/twin/GET?$rid=7", want: Request{Kind: KindTwinGet, RID: "7"}},
	{name: "twin get extra params", device: dev, raw: "$iothub/twin/GET/?foo=bar&$rid=7&x", want: Request{Kind: KindTwinGet, RID: "7"}},
	{name: "twin get rid kept raw", device: dev, raw: "$iothub/twin/GET/?$rid=a%20b", want: Request{Kind: KindTwinGet, RID: "a%20b"}, canonical: true},
	{name: "reported patch", device: dev, raw: "$iothub/twin/PATCH/properties/reported/?$rid=1",
		want: Request{Kind: KindReportedPatch, RID: "1"}, canonical: true},

	// Methods. [azure note 1.8]
	{name: "method response", device: dev, raw: "$iothub/methods/res/200/?$rid=9",
		want: Request{Kind: KindMethodResponse, Status: 200, RID: "9"}, canonical: true},
	{name: "method response negative status", device: dev, raw: "$iothub/methods/res/-1/?$rid=9",
		want: Request{Kind: KindMethodResponse, Status: -1, RID: "9"}, canonical: true},

	// Refused.
	{name: "other device telemetry", device: dev, raw: "devices/dev2/messages/events/", wantErr: true},
	{name: "device id prefix", device: dev, raw: "devices/dev10/messages/events/", wantErr: true},
	{name: "module telemetry", device: dev, raw: "devices/dev1/modules/m1/messages/events/", wantErr: true},
	{name: "devicebound publish", device: dev, raw: "devices/dev1/messages/devicebound/", wantErr: true},
	{name: "events suffix garbage", device: dev, raw: "devices/dev1/messages/eventsx", wantErr: true},
	{name: "bad escape in bag", device: dev, raw: "devices/dev1/messages/events/a=%zz", wantErr: true},
	{name: "truncated escape in bag", device: dev, raw: "devices/dev1/messages/events/a=%2", wantErr: true},
	{name: "empty name in bag", device: dev, raw: "devices/dev1/messages/events/=v", wantErr: true},
	{name: "twin get without rid", device: dev, raw: "$iothub/twin/GET/", wantErr: true},
	{name: "twin get empty rid", device: dev, raw: "$iothub/twin/GET/?$rid=", wantErr: true},
	{name: "twin get duplicate rid", device: dev, raw: "$iothub/twin/GET/?$rid=1&$rid=2", wantErr: true},
	{name: "twin get wildcard rid", device: dev, raw: "$iothub/twin/GET/?$rid=#", wantErr: true},
	{name: "reported patch without rid", device: dev, raw: "$iothub/twin/PATCH/properties/reported/", wantErr: true},
	{name: "desired patch from device", device: dev, raw: "$iothub/twin/PATCH/properties/desired/?$version=3", wantErr: true},
	{name: "twin response from device", device: dev, raw: "$iothub/twin/res/200/?$rid=1", wantErr: true},
	{name: "method request from device", device: dev, raw: "$iothub/methods/POST/reboot/?$rid=1", wantErr: true},
	{name: "method response non-integer status", device: dev, raw: "$iothub/methods/res/ok/?$rid=1", wantErr: true},
	{name: "method response empty status", device: dev, raw: "$iothub/methods/res//?$rid=1", wantErr: true},
	{name: "method response huge status", device: dev, raw: "$iothub/methods/res/99999999999/?$rid=1", wantErr: true},
	{name: "method response without rid", device: dev, raw: "$iothub/methods/res/200/", wantErr: true},
	{name: "unknown iothub path", device: dev, raw: "$iothub/twin/DELETE/?$rid=1", wantErr: true},
	{name: "sys topic", device: dev, raw: "$SYS/broker/version", wantErr: true},
	{name: "empty topic", device: dev, raw: "", wantErr: true},
	{name: "hash", device: dev, raw: "#", wantErr: true},
	{name: "custom topic", device: dev, raw: "plant/line1/temp", wantErr: true},
	{name: "invalid device id", device: "a/b", raw: "devices/a/b/messages/events/", wantErr: true},
	{name: "empty device id", device: "", raw: "devices//messages/events/", wantErr: true},
	{name: "wildcard device id", device: "+", raw: "devices/+/messages/events/", wantErr: true},
}
