package sas

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Vectors computed independently (Python hmac/hashlib) for key bytes 0..31.
const (
	testKey       = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	deviceSig     = "P4/bGf3JveN+HxLgel1R2hODyMIa+GAL/WC8Elu48eI=" // sr=myhub.local%2Fdevices%2Fpump-1, se=2000000000
	rawServiceSig = "9CgR7Rq5sx7OlxQ18DwkoI9E6iwoNxZnavteZGaKxrw=" // sr=myhub.local (raw, as the Node service SDK sends it)
	derivedPump1  = "l+n7bxS3LYFgDS0aqlGbeByZ/xgfpOyIl7WG7fM3rIg="
)

func TestSignMatchesIndependentVector(t *testing.T) {
	tok, err := Sign("myhub.local/devices/pump-1", testKey, "", time.Unix(2000000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := "SharedAccessSignature sr=myhub.local%2Fdevices%2Fpump-1&sig=" + url.QueryEscape(deviceSig) + "&se=2000000000"
	if tok != want {
		t.Fatalf("token\n got %s\nwant %s", tok, want)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1900000000, 0)
	cases := []struct {
		name, token string
		want        error
	}{
		{"device token", "SharedAccessSignature sr=myhub.local%2Fdevices%2Fpump-1&sig=" + url.QueryEscape(deviceSig) + "&se=2000000000", nil},
		{"fields in another order", "SharedAccessSignature se=2000000000&sig=" + url.QueryEscape(deviceSig) + "&sr=myhub.local%2Fdevices%2Fpump-1", nil},
		{"raw sr signed raw", "SharedAccessSignature sr=myhub.local&sig=" + url.QueryEscape(rawServiceSig) + "&se=2000000000&skn=iothubowner", nil},
		{"tampered resource", "SharedAccessSignature sr=myhub.local%2Fdevices%2Fpump-2&sig=" + url.QueryEscape(deviceSig) + "&se=2000000000", ErrSignature},
		{"tampered expiry", "SharedAccessSignature sr=myhub.local%2Fdevices%2Fpump-1&sig=" + url.QueryEscape(deviceSig) + "&se=2000000001", ErrSignature},
		{"sig not base64", "SharedAccessSignature sr=a&sig=%%%&se=1", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := Parse(c.token)
			if err == nil {
				err = tok.Verify(testKey, now)
			}
			if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	tok, _ := Parse("SharedAccessSignature sr=myhub.local%2Fdevices%2Fpump-1&sig=" + url.QueryEscape(deviceSig) + "&se=2000000000")
	if err := tok.Verify(testKey, time.Unix(2000000000, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v", err)
	}
	if err := tok.Verify("not base64!", now); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestParseGarbage(t *testing.T) {
	for _, s := range []string{"", "Bearer x", "SharedAccessSignature ", "SharedAccessSignature sr=a&se=1", "SharedAccessSignature sr=a&sig=b&se=soon",
		"SharedAccessSignature sr&sig=b&se=1", "SharedAccessSignature sr=%zz&sig=b&se=1", strings.Repeat("x", 10000)} {
		if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.40q) = %v, want ErrMalformed", s, err)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, c := range []struct {
		resource, target string
		want             bool
	}{
		{"myhub.local", "myhub.local/devices/d1", true},
		{"myhub.local/devices", "myhub.local/devices/d1", true},
		{"MyHub.Local/Devices/D1", "myhub.local/devices/d1", true},
		{"myhub.local:8883/devices/d1", "myhub.local/devices/d1", true},
		{"myhub.local/devices/d1", "myhub.local/devices/d10", false},
		{"myhub.local/devices/d1/modules/m", "myhub.local/devices/d1", false},
		{"otherhub/devices/d1", "myhub.local/devices/d1", false},
	} {
		if got := (Token{Resource: c.resource}).Covers(c.target); got != c.want {
			t.Errorf("%q covers %q = %v, want %v", c.resource, c.target, got, c.want)
		}
	}
}

func TestDeriveKeyMatchesDPS(t *testing.T) {
	k, err := DeriveKey(testKey, "pump-1")
	if err != nil || k != derivedPump1 {
		t.Fatalf("DeriveKey = %q, %v; want %q", k, err, derivedPump1)
	}
	if _, err := DeriveKey("!!", "x"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad group key: %v", err)
	}
}

func TestConnectionString(t *testing.T) {
	cs, err := ParseConnectionString("HostName=hub.local;DeviceId=pump-1;SharedAccessKey=" + testKey + ";GatewayHostName=gw")
	if err != nil || cs.HostName != "hub.local" || cs.DeviceID != "pump-1" || cs.Key != testKey || cs.GatewayHostName != "gw" {
		t.Fatalf("%+v %v", cs, err)
	}
	if back, _ := ParseConnectionString(cs.String()); back != cs {
		t.Fatalf("round trip %+v", back)
	}
	svc, err := ParseConnectionString("hostname=hub.local;sharedaccesskeyname=iothubowner;sharedaccesskey=abc=")
	if err != nil || svc.KeyName != "iothubowner" || svc.Key != "abc=" {
		t.Fatalf("service: %+v %v", svc, err)
	}
	for _, bad := range []string{"", "HostName=h", "HostName=h;SharedAccessKey=k", "DeviceId=d;SharedAccessKey=k", "garbage", "HostName=h;SharedAccessKeyverylongwithoutequals"} {
		_, err := ParseConnectionString(bad)
		if !errors.Is(err, ErrConnectionString) {
			t.Errorf("%q: %v", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "verylongwithoutequals") {
			t.Errorf("error leaks the input: %v", err)
		}
	}
}
