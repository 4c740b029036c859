package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/localhub/hubtest"
	"github.com/drover-iot/drover/localhub/store"
)

// fleet is a small hub for the console tests: five pumps (two connected,
// pump-1 answering methods and reporting state), a gateway with two children.
type fleet struct {
	env   *hubtest.Env
	api   *serviceclient.Client
	pump1 *hubtest.Device
	base  string // https://127.0.0.1:PORT
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	env := hubtest.Start(t)
	ctx := context.Background()
	st := env.Hub.Store()
	keys := map[string]string{}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("pump-%d", i)
		keys[id] = env.CreateDevice(t, id).PrimaryKey
	}
	gw, err := st.CreateDevice(ctx, store.Device{ID: "gw-1", IoTEdge: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"valve-1", "valve-2"} {
		if _, err := st.CreateDevice(ctx, store.Device{ID: id, DeviceScope: gw.DeviceScope, ParentScopes: []string{gw.DeviceScope}}); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := sas.ParseConnectionString(env.OwnerConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	api, err := serviceclient.New(cs, serviceclient.Options{Address: env.HTTPSAddr, CAFile: env.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{env: env, api: api, base: "https://" + env.HTTPSAddr}
	f.pump1 = env.Connect(t, "pump-1", keys["pump-1"])
	env.Connect(t, "pump-2", keys["pump-2"])
	answerMethods(t, f.pump1)
	report(t, f.pump1, `{"connection":{"state":"online"},"firmware":{"status":"current","currentVersion":"1.4.2"},"points":{"temperature":21.7,"pressure":2.4}}`)
	return f
}

// answerMethods makes d answer every direct method with 200 and {"method": name, "got": payload}.
func answerMethods(t *testing.T, d *hubtest.Device) {
	t.Helper()
	tok := d.Client.Subscribe("$iothub/methods/POST/#", 0, func(c mqtt.Client, m mqtt.Message) {
		rest := strings.TrimPrefix(m.Topic(), "$iothub/methods/POST/")
		name, q, _ := strings.Cut(rest, "/?")
		rid := strings.TrimPrefix(q, "$rid=")
		body := string(m.Payload())
		if body == "" {
			body = "null"
		}
		c.Publish(fmt.Sprintf("$iothub/methods/res/200/?$rid=%s", rid), 0, false, fmt.Sprintf(`{"method":%q,"got":%s}`, name, body))
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to methods: %v", tok.Error())
	}
}

// report sends a reported-properties patch and waits for the hub's 204.
func report(t *testing.T, d *hubtest.Device, patch string) {
	t.Helper()
	if err := d.Publish("$iothub/twin/PATCH/properties/reported/?$rid=r1", 1, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	m := d.Await(t, "$iothub/twin/res/#", 10*time.Second)
	if !strings.HasPrefix(m.Topic(), "$iothub/twin/res/204/") {
		t.Fatalf("reported patch answered %s: %s", m.Topic(), m.Payload())
	}
}

// policyKey is a built-in policy's primary key.
func (f *fleet) policyKey(t *testing.T, name string) string {
	t.Helper()
	p, err := f.env.Hub.Store().Policy(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p.PrimaryKey
}

// client is a cookie-keeping HTTPS client that does not follow redirects.
func (f *fleet) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar: jar, Timeout: 60 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: f.env.TLSConfig()},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns status, body and the page's CSRF token (if any).
func get(t *testing.T, c *http.Client, u string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok := ""
	if m := csrfField.FindSubmatch(b); m != nil {
		tok = string(m[1])
	}
	return resp.StatusCode, string(b), tok
}

// post sends a form and returns status, Location and body.
func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// signIn signs c in with a policy and returns the session's CSRF token.
func (f *fleet) signIn(t *testing.T, c *http.Client, policy string) string {
	t.Helper()
	_, _, tok := get(t, c, f.base+"/ui/signin")
	if tok == "" {
		t.Fatal("sign-in page has no CSRF token")
	}
	status, loc, body := post(t, c, f.base+"/ui/signin", url.Values{"csrf": {tok}, "policy": {policy}, "key": {f.policyKey(t, policy)}})
	if status != http.StatusSeeOther || loc != "/ui/fleet" {
		t.Fatalf("sign in as %s: %d %q %s", policy, status, loc, body)
	}
	_, _, csrf := get(t, c, f.base+"/ui/fleet")
	if csrf == "" {
		t.Fatal("fleet page has no CSRF token")
	}
	return csrf
}
