package console_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleGuards checks the console's gates over HTTPS without a browser:
// no session → redirect (pages) or 401 (forms); a form without the session's
// CSRF token → 403; a policy without ServiceConnect gets no edit controls and
// its forged posts are refused by the REST API's own check (403) with nothing changed.
func TestConsoleGuards(t *testing.T) {
	f := startFleet(t)
	anon := f.client(t)

	t.Run("no session", func(t *testing.T) {
		for _, p := range []string{"/ui/fleet", "/ui/devices?q=x", "/ui/devices/pump-1", "/ui/jobs", "/ui/jobs/x", "/ui/firmware"} {
			resp, err := anon.Get(f.base + p)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin?next=") {
				t.Errorf("GET %s without a session: %d Location %q, want 303 to /ui/signin", p, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		status, _, _ := post(t, anon, f.base+"/ui/devices/pump-1/twin", url.Values{"section": {"desired"}, "patch": {`{"x":1}`}})
		if status != http.StatusUnauthorized {
			t.Errorf("POST without a session: %d, want 401", status)
		}
	})

	t.Run("bad sign-in", func(t *testing.T) {
		c := f.client(t)
		_, _, tok := get(t, c, f.base+"/ui/signin")
		status, _, body := post(t, c, f.base+"/ui/signin", url.Values{"csrf": {tok}, "policy": {"iothubowner"}, "key": {"bm90IHRoZSBrZXk="}})
		if status != http.StatusUnauthorized || !strings.Contains(body, "sign-in failed") {
			t.Errorf("wrong key: %d, want 401 with an explanation", status)
		}
		status, _, _ = post(t, c, f.base+"/ui/signin", url.Values{"policy": {"iothubowner"}, "key": {f.policyKey(t, "iothubowner")}})
		if status != http.StatusForbidden {
			t.Errorf("sign-in without its CSRF token: %d, want 403", status)
		}
	})

	t.Run("csrf", func(t *testing.T) {
		c := f.client(t)
		csrf := f.signIn(t, c, "iothubowner")
		// The firmware page works on this hub whether or not it has firmware routes.
		if status, body, _ := get(t, c, f.base+"/ui/firmware"); status != http.StatusOK ||
			!(strings.Contains(body, `id="firmware-unavailable"`) || strings.Contains(body, `id="h-images"`)) {
			t.Errorf("firmware page: %d", status)
		}
		before, err := f.api.GetTwin(context.Background(), "pump-3")
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []url.Values{
			{"section": {"desired"}, "patch": {`{"x":1}`}},
			{"section": {"desired"}, "patch": {`{"x":1}`}, "csrf": {"forged" + csrf[6:]}},
		} {
			status, _, _ := post(t, c, f.base+"/ui/devices/pump-3/twin", form)
			if status != http.StatusForbidden {
				t.Errorf("twin edit with csrf %q: %d, want 403", form.Get("csrf"), status)
			}
		}
		status, _, _ := post(t, c, f.base+"/ui/jobs", url.Values{"id": {"j"}, "type": {"twin"}, "desired": {`{"x":1}`}})
		if status != http.StatusForbidden {
			t.Errorf("job without csrf: %d, want 403", status)
		}
		after, err := f.api.GetTwin(context.Background(), "pump-3")
		if err != nil {
			t.Fatal(err)
		}
		if after.ETag != before.ETag {
			t.Errorf("refused posts changed the twin: etag %s → %s", before.ETag, after.ETag)
		}
		// The same form with the token goes through (the refusals above were the token's doing).
		status, loc, body := post(t, c, f.base+"/ui/devices/pump-3/twin", url.Values{"section": {"desired"}, "patch": {`{"x":1}`}, "csrf": {csrf}})
		if status != http.StatusSeeOther || !strings.Contains(loc, "saved=desired") {
			t.Fatalf("twin edit with csrf: %d %q %s", status, loc, body)
		}
	})

	t.Run("read-only policy", func(t *testing.T) {
		c := f.client(t)
		csrf := f.signIn(t, c, "registryRead")
		status, body, _ := get(t, c, f.base+"/ui/devices/pump-1")
		if status != http.StatusOK {
			t.Fatalf("device page as registryRead: %d", status)
		}
		for _, control := range []string{`id="edit-form"`, `id="method-form"`, `id="save-twin"`, `id="invoke"`} {
			if strings.Contains(body, control) {
				t.Errorf("registryRead sees %s", control)
			}
		}
		_, body, _ = get(t, c, f.base+"/ui/jobs")
		if strings.Contains(body, `id="job-form"`) || strings.Contains(body, `id="create-job"`) {
			t.Error("registryRead sees the create-job form")
		}
		before, err := f.api.GetTwin(context.Background(), "pump-1")
		if err != nil {
			t.Fatal(err)
		}
		forged := map[string]url.Values{
			"/ui/devices/pump-1/twin":    {"csrf": {csrf}, "section": {"desired"}, "patch": {`{"forged":true}`}, "etag": {before.ETag}},
			"/ui/devices/pump-1/methods": {"csrf": {csrf}, "method": {"reboot"}},
			"/ui/jobs":                   {"csrf": {csrf}, "id": {"forged"}, "type": {"twin"}, "condition": {"*"}, "desired": {`{"forged":true}`}},
			"/ui/jobs/forged/cancel":     {"csrf": {csrf}},
		}
		for p, form := range forged {
			status, _, body := post(t, c, f.base+p, form)
			if status != http.StatusForbidden {
				t.Errorf("forged POST %s as registryRead: %d, want 403: %s", p, status, body)
			}
		}
		after, err := f.api.GetTwin(context.Background(), "pump-1")
		if err != nil {
			t.Fatal(err)
		}
		if after.ETag != before.ETag {
			t.Errorf("forged posts changed the twin: etag %s → %s", before.ETag, after.ETag)
		}
		if jobs, err := f.api.ListJobs(context.Background(), "", ""); err != nil || len(jobs) != 0 {
			t.Errorf("forged job: jobs %v, err %v", jobs, err)
		}
	})
}

// TestConsoleDevicePaging pages through the devices list by the API's continuation token.
func TestConsoleDevicePaging(t *testing.T) {
	f := startFleet(t)
	for i := range 60 {
		f.env.CreateDevice(t, fmt.Sprintf("extra-%02d", i))
	}
	c := f.client(t)
	f.signIn(t, c, "iothubowner")
	status, body, _ := get(t, c, f.base+"/ui/devices")
	if status != http.StatusOK || strings.Count(body, `<tr><td><a href="/ui/devices/`) != 50 {
		t.Fatalf("first page: %d, %d rows, want 50", status, strings.Count(body, `<tr><td><a href="/ui/devices/`))
	}
	m := regexp.MustCompile(`id="next-page" rel="next" href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("first page has no next-page link")
	}
	status, body, _ = get(t, c, f.base+html.UnescapeString(m[1]))
	if rows := strings.Count(body, `<tr><td><a href="/ui/devices/`); status != http.StatusOK || rows != 68-50 || strings.Contains(body, `id="next-page"`) {
		t.Fatalf("second page: %d, %d rows (want 18), next link %v", status, rows, strings.Contains(body, `id="next-page"`))
	}
}
