package localhub_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/localhub/hubtest"
	"github.com/drover-iot/drover/localhub/store"
)

// TestServiceAuthMatrix checks every route against missing, malformed, wrong,
// expired and under-privileged tokens.
func TestServiceAuthMatrix(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	a.must(200, "PUT", "/devices/d1", map[string]any{})

	owner, _ := sas.ParseConnectionString(env.OwnerConnectionString)
	expired, _ := sas.Sign(env.Hostname, owner.Key, owner.KeyName, time.Now().Add(-time.Minute))
	wrongKey, _ := sas.Sign(env.Hostname, store.NewKey(), owner.KeyName, time.Now().Add(time.Hour))
	otherHub, _ := sas.Sign("otherhub.example", owner.Key, owner.KeyName, time.Now().Add(time.Hour))
	unknownPolicy, _ := sas.Sign(env.Hostname, owner.Key, "nobody", time.Now().Add(time.Hour))
	deviceTok := env.Token(t, "d1", store.NewKey(), time.Hour)

	unauth := []struct{ name, token string }{
		{"missing", ""},
		{"garbage", "Bearer xyz"},
		{"malformed", "SharedAccessSignature sr=x"},
		{"expired", expired},
		{"wrong key", wrongKey},
		{"other hub", otherHub},
		{"unknown policy", unknownPolicy},
		{"device token", deviceTok},
	}
	routes := []struct {
		method, path string
		body         any
		right        store.Right
	}{
		{"PUT", "/devices/d2", map[string]any{}, store.RegistryWrite},
		{"GET", "/devices/d1", nil, store.RegistryRead},
		{"GET", "/devices", nil, store.RegistryRead},
		{"POST", "/devices", []map[string]any{{"id": "d3", "importMode": "create"}}, store.RegistryWrite},
		{"DELETE", "/devices/d9", nil, store.RegistryWrite},
		{"GET", "/statistics/devices", nil, store.RegistryRead},
		{"POST", "/devices/query", map[string]string{"query": "SELECT * FROM devices"}, store.ServiceConnect},
		{"GET", "/twins/d1", nil, store.ServiceConnect},
		{"PATCH", "/twins/d1", map[string]any{"tags": map[string]any{"a": 1}}, store.ServiceConnect},
		{"PUT", "/twins/d1", map[string]any{"tags": map[string]any{"a": 1}}, store.ServiceConnect},
		{"POST", "/twins/d1/methods", map[string]any{"methodName": "m"}, store.ServiceConnect},
		{"GET", "/statistics/service", nil, store.ServiceConnect},
	}
	for _, rt := range routes {
		for _, u := range unauth {
			t.Run(rt.method+rt.path+"/"+u.name, func(t *testing.T) {
				b := *a
				b.token = u.token
				r := b.do(rt.method, rt.path, rt.body)
				if r.Status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401: %s", r.Status, r.Body)
				}
				r.errorCode(t) // Azure's error shape
			})
		}
		for _, p := range store.DefaultPolicies {
			t.Run(rt.method+rt.path+"/"+p.Name, func(t *testing.T) {
				r := a.as(p.Name).do(rt.method, rt.path, rt.body)
				if p.Has(rt.right) {
					if r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
						t.Fatalf("policy %s has %s but got %d: %s", p.Name, rt.right, r.Status, r.Body)
					}
					return
				}
				if r.Status != http.StatusForbidden {
					t.Fatalf("policy %s lacks %s: got %d, want 403: %s", p.Name, rt.right, r.Status, r.Body)
				}
			})
		}
	}
	// The secondary key of a policy works too.
	p, _ := env.Hub.Store().Policy(context.Background(), "registryRead")
	b := *a
	b.token = env.ServiceToken(t, p.Name, p.SecondaryKey, time.Hour)
	b.must(200, "GET", "/devices/d1", nil)
}

// TestDeviceAuthMatrix covers CONNECT: good token, wrong key, expired, other
// device's token, disabled, unknown device, and mismatched client id/username.
func TestDeviceAuthMatrix(t *testing.T) {
	env := hubtest.Start(t)
	d1 := env.CreateDevice(t, "d1")
	d2 := env.CreateDevice(t, "d2")
	dis := env.CreateDevice(t, "off")
	if _, _, err := env.Hub.Store().UpdateDevice(context.Background(), store.Device{ID: "off", Status: "disabled"}, "*"); err != nil {
		t.Fatal(err)
	}
	devPolicy, _ := env.Hub.Store().Policy(context.Background(), "device")
	policyTok, _ := sas.Sign(sas.DeviceResource(env.Hostname, "d1"), devPolicy.PrimaryKey, "device", time.Now().Add(time.Hour))
	svcPolicy, _ := env.Hub.Store().Policy(context.Background(), "service")
	svcTok, _ := sas.Sign(sas.DeviceResource(env.Hostname, "d1"), svcPolicy.PrimaryKey, "service", time.Now().Add(time.Hour))

	cases := []struct {
		name, id, password string
		ok                 bool
	}{
		{"good", "d1", env.Token(t, "d1", d1.PrimaryKey, time.Hour), true},
		{"secondary key", "d1", env.Token(t, "d1", d1.SecondaryKey, time.Hour), true},
		{"device policy", "d1", policyTok, true},
		{"service policy lacks DeviceConnect", "d1", svcTok, false},
		{"wrong key", "d1", env.Token(t, "d1", d2.PrimaryKey, time.Hour), false},
		{"expired", "d1", env.Token(t, "d1", d1.PrimaryKey, -time.Minute), false},
		{"token for another device", "d1", env.Token(t, "d2", d2.PrimaryKey, time.Hour), false},
		{"disabled", "off", env.Token(t, "off", dis.PrimaryKey, time.Hour), false},
		{"unknown device", "ghost", env.Token(t, "ghost", d1.PrimaryKey, time.Hour), false},
		{"garbage password", "d1", "hello", false},
		{"empty password", "d1", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := env.TryConnect(c.id, c.password)
			if c.ok {
				if err != nil {
					t.Fatalf("want connected, got %v", err)
				}
				d.Client.Disconnect(10)
				return
			}
			if err == nil {
				d.Client.Disconnect(10)
				t.Fatal("connected with a bad credential")
			}
		})
	}
	t.Run("username names another device", func(t *testing.T) {
		o := env.ClientOptions("d1", env.Token(t, "d1", d1.PrimaryKey, time.Hour))
		o.SetUsername(env.Hostname + "/d2/?api-version=2021-04-12")
		if err := connectOpts(o); err == nil {
			t.Fatal("connected with a username for another device")
		}
	})
	t.Run("username for another hub", func(t *testing.T) {
		o := env.ClientOptions("d1", env.Token(t, "d1", d1.PrimaryKey, time.Hour))
		o.SetUsername("otherhub/d1/?api-version=2021-04-12")
		if err := connectOpts(o); err == nil {
			t.Fatal("connected with a username for another hub")
		}
	})
}

// TestRevocationDropsLiveSession: disabling, deleting or re-keying a device ends its session within a second.
func TestRevocationDropsLiveSession(t *testing.T) {
	env := hubtest.Start(t)
	a := newAPI(t, env)
	for _, c := range []struct {
		name   string
		revoke func(id string, etag string)
	}{
		{"disable", func(id, etag string) {
			a.must(200, "PUT", "/devices/"+id, map[string]any{"status": "disabled"}, "If-Match", "*")
		}},
		{"delete", func(id, etag string) { a.must(204, "DELETE", "/devices/"+id, nil) }},
		{"rekey", func(id, etag string) {
			a.must(200, "PUT", "/devices/"+id, map[string]any{"authentication": map[string]any{"type": "sas",
				"symmetricKey": map[string]any{"primaryKey": store.NewKey(), "secondaryKey": store.NewKey()}}}, "If-Match", etag)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "rev-" + c.name
			dev := env.CreateDevice(t, id)
			d := env.Connect(t, id, dev.PrimaryKey)
			start := time.Now()
			c.revoke(id, dev.Etag)
			select {
			case <-d.Lost:
				if el := time.Since(start); el > time.Second {
					t.Errorf("session dropped after %s, want within 1s", el)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("session not dropped")
			}
			// And it cannot come back with the old credential.
			if _, err := env.TryConnect(id, env.Token(t, id, dev.PrimaryKey, time.Hour)); err == nil {
				t.Fatal("reconnected after revocation")
			}
		})
	}
}

// TestBadConnectFloodKeepsServing: 200 bad CONNECTs in parallel while a good device keeps doing round trips.
func TestBadConnectFloodKeepsServing(t *testing.T) {
	env := hubtest.Start(t)
	dev := env.CreateDevice(t, "good")
	d := env.Connect(t, "good", dev.PrimaryKey)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var accepted int
	var mu sync.Mutex
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25 && ctx.Err() == nil; i++ {
				id := fmt.Sprintf("bad-%d-%d", w, i)
				if i%2 == 0 {
					id = "good"
				}
				c, err := env.TryConnect(id, "SharedAccessSignature sr=x&sig=y&se=1")
				if err == nil {
					mu.Lock()
					accepted++
					mu.Unlock()
					c.Client.Disconnect(0)
				}
			}
		}(w)
	}
	rounds := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		default:
		}
		rid := fmt.Sprint(rounds)
		if err := d.Publish("$iothub/twin/GET/?$rid="+rid, 0, nil); err != nil {
			t.Fatal(err)
		}
		m := d.Await(t, "$iothub/twin/res/#", 10*time.Second)
		if !strings.Contains(m.Topic(), "$rid="+rid) {
			t.Fatalf("reply %s for rid %s", m.Topic(), rid)
		}
		rounds++
	}
	cancel()
	if accepted != 0 {
		t.Fatalf("%d bad connects accepted", accepted)
	}
	if rounds == 0 {
		t.Fatal("good device made no round trip during the flood")
	}
	select {
	case err := <-d.Lost:
		t.Fatalf("good device lost its session during the flood (bad connects used its id): %v", errors.Unwrap(err))
	default:
	}
}

func connectOpts(o *mqtt.ClientOptions) error {
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(10)
	return nil
}
