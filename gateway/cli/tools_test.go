package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/gateway/localapi"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestGolden runs each command in-process against a real local API server
// (127.0.0.1:0) backed by a fake Backend and compares exit code, stdout and
// stderr with testdata/golden/<name>.txt. Run with -update to rewrite them,
// then read the diff.
func TestGolden(t *testing.T) {
	clearEnv(t)
	addr := startAPI(t, "")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(localapi.TokenPath(data), []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "gateway.yaml"), "gateway:\n  id: gw-plant1\n  data_dir: data\n  local_api: "+addr+"\n")
	writeFile(t, filepath.Join(dir, "empty-data.yaml"), "gateway:\n  id: gw-plant1\n  data_dir: nodata\n  local_api: "+addr+"\n")

	cases := []struct {
		name string
		args string // split on spaces; $API, $TMP, $TOKEN expanded; '…' keeps a JSON argument whole
	}{
		{"status", "status --api $API"},
		{"status-json", "status --api $API -o json"},
		{"devices", "devices --api $API"},
		{"devices-json", "devices --api $API -o json"},
		{"twin", "twin pump-1 --api $API"},
		{"twin-unknown", "twin pump-9 --api $API"},
		{"read", "read pump-1 temperature running pressure --api $API"},
		{"read-all", "read pump-1 --api $API"},
		{"read-json", "read pump-1 mode --api $API -o json"},
		{"read-unknown-point", "read pump-1 flow --api $API"},
		{"write", "write pump-1 setpoint=21.50 mode=auto enabled=true --api $API --token $TOKEN"},
		{"write-partial", "write pump-1 setpoint=20 readonly=1 --api $API --token $TOKEN"},
		{"write-json", "write pump-1 setpoint=21.5 --api $API --token $TOKEN -o json"},
		{"write-token-from-config", "write pump-1 setpoint=21.5 -c $TMP/gateway.yaml"},
		{"write-no-token", "write pump-1 setpoint=21.5 -c $TMP/empty-data.yaml"},
		{"write-wrong-token", "write pump-1 setpoint=21.5 --api $API --token nope"},
		{"write-bad-arg", "write pump-1 setpoint --api $API --token $TOKEN"},
		{"write-null", "write pump-1 setpoint=null --api $API --token $TOKEN"},
		{"invoke", "invoke pump-1 identify --api $API --token $TOKEN"},
		{"invoke-refused", "invoke pump-1 reboot --api $API --token $TOKEN"},
		{"invoke-force", `invoke pump-1 reboot '{"force":true}' --api $API --token $TOKEN`},
		{"invoke-json", `invoke pump-1 reboot '{"force":true}' --api $API --token $TOKEN -o json`},
		{"invoke-bad-payload", `invoke pump-1 reboot '{force}' --api $API --token $TOKEN`},
		{"invoke-unsupported", "invoke pump-1 dance --api $API --token $TOKEN"},
		{"scan", "scan rs485-1 --api $API --token $TOKEN"},
		{"scan-range", "scan rs485-1 --from 2 --to 4 --api $API --token $TOKEN"},
		{"scan-json", "scan rs485-1 --from 3 --to 4 --api $API --token $TOKEN -o json"},
		{"scan-busy", "scan lan --api $API --token $TOKEN"},
		{"scan-force", "scan lan --force --from 3 --to 3 --api $API --token $TOKEN"},
		{"scan-stopped", "scan flaky --api $API --token $TOKEN"},
		{"scan-unknown-bus", "scan nope --api $API --token $TOKEN"},
		{"scan-from-only", "scan rs485-1 --from 2 --api $API --token $TOKEN"},
		{"jobs", "jobs --api $API"},
		{"jobs-device", "jobs --device pump-1 --api $API"},
		{"jobs-list", "jobs list --device pump-1 --api $API"},
		{"jobs-show", "jobs show j-16 --api $API"},
		{"jobs-show-json", "jobs show j-17 --api $API -o json"},
		{"jobs-show-unknown", "jobs show j-99 --api $API"},
		{"unreachable", "status --api unix:$TMP/none.sock"},
		{"bad-output", "status --api $API -o yaml"},
		{"bad-api", "status --api localhost"},
		{"config-check-good", "config check ../config/testdata/good.yaml"},
		{"config-check-bad", "config check ../config/testdata/bad/typo-key.yaml"},
		{"config-check-bad-json", "config check ../config/testdata/bad/typo-key.yaml -o json"},
		{"config-check-missing", "config check $TMP/nope.yaml"},
	}
	expand := strings.NewReplacer("$API", addr, "$TMP", dir, "$TOKEN", apiToken)
	back := map[string]string{addr: "$API", dir: "$TMP", apiToken: "$TOKEN"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := splitArgs(expand.Replace(tc.args))
			stdout, stderr, code := drover(args...)
			got := fmt.Sprintf("$ drover %s\nexit %d\n--- stdout\n%s--- stderr\n%s",
				tc.args, code, scrub(stdout, back), scrub(stderr, back))
			golden := filepath.Join("testdata", "golden", tc.name+".txt")
			if *update {
				writeFile(t, golden, got)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// splitArgs splits on spaces, keeping '…' quoted parts whole.
func splitArgs(s string) []string {
	var out []string
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		if s[0] == '\'' {
			end := strings.IndexByte(s[1:], '\'')
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		word, rest, _ := strings.Cut(s, " ")
		out = append(out, word)
		s = rest
	}
	return out
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDiscoveryOrder checks where the CLI looks for the API: --api, then
// $DROVER_API, then gateway.local_api of -c, then the default; and where
// it looks for the token file.
func TestDiscoveryOrder(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfg, "gateway:\n  id: gw\n  local_api: 127.0.0.1:7999\n  data_dir: state\n")
	sock := filepath.Join(dir, "unix.yaml")
	writeFile(t, sock, "gateway:\n  local_api: unix:/run/drover.sock\n  data_dir: /srv/drover\n  local_api_token_file: secrets/api.token\n")
	bare := filepath.Join(dir, "bare.yaml")
	writeFile(t, bare, "gateway:\n  id: gw\nbuses: [ this is, { not valid for config check\n")
	notMap := filepath.Join(dir, "notmap.yaml")
	writeFile(t, notMap, "gateway: 5\n")
	binary := filepath.Join(dir, "binary.yaml")
	writeFile(t, binary, "\x00\xff\xfe garbage \x01")
	minimal := filepath.Join(dir, "minimal.yaml")
	writeFile(t, minimal, "gateway:\n  id: gw\n")
	cases := []struct {
		name, flag, env, config string
		addr, source, tokenFile string
		wantErr                 string
	}{
		{"flag wins over all", "127.0.0.1:1111", "127.0.0.1:2222", cfg, "127.0.0.1:1111", "--api", filepath.Join(dir, "state", "api.token"), ""},
		{"env wins over config", "", "127.0.0.1:2222", cfg, "127.0.0.1:2222", "$DROVER_API", filepath.Join(dir, "state", "api.token"), ""},
		{"config file", "", "", cfg, "127.0.0.1:7999", "gateway.local_api in " + cfg, filepath.Join(dir, "state", "api.token"), ""},
		{"default", "", "", "", "127.0.0.1:7080", "the default", "/var/lib/drover/api.token", ""},
		{"env without config", "", "unix:/tmp/d.sock", "", "unix:/tmp/d.sock", "$DROVER_API", "/var/lib/drover/api.token", ""},
		{"unix socket and token file from config", "", "", sock, "unix:/run/drover.sock", "gateway.local_api in " + sock, filepath.Join(dir, "secrets", "api.token"), ""},
		{"config defaults", "", "", minimal, "127.0.0.1:7080", "gateway.local_api in " + minimal, "/var/lib/drover/api.token", ""},
		{"listen-all becomes loopback", ":7080", "", "", "127.0.0.1:7080", "--api", "/var/lib/drover/api.token", ""},
		{"0.0.0.0 becomes loopback", "0.0.0.0:7080", "", "", "127.0.0.1:7080", "--api", "/var/lib/drover/api.token", ""},
		{"[::] becomes loopback", "[::]:7080", "", "", "127.0.0.1:7080", "--api", "/var/lib/drover/api.token", ""},
		{"http prefix tolerated", "http://127.0.0.1:7080/", "", "", "127.0.0.1:7080", "--api", "/var/lib/drover/api.token", ""},
		{"missing config file", "", "", filepath.Join(dir, "nope.yaml"), "", "", "", "no such file"},
		{"config that is not YAML", "", "", bare, "", "", "", "run drover config check"},
		{"gateway that is not a mapping", "", "", notMap, "", "", "", "read gateway settings from"},
		{"binary config", "", "", binary, "", "", "", "read gateway settings from"},
		{"config is a directory", "", "", dir, "", "", "", "not a gateway.yaml"},
		{"bad flag address", "localhost", "", "", "", "", "", `API address "localhost" from --api`},
		{"bad env address", "", "7080", "", "", "", "", "from $DROVER_API"},
		{"empty unix path", "unix:", "", "", "", "", "", "socket path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == envAPI {
					return tc.env
				}
				return ""
			}
			ep, err := resolveEndpoint(tc.flag, tc.config, getenv, "/var/lib/drover")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.addr != tc.addr || ep.source != tc.source || ep.tokenFile != tc.tokenFile {
				t.Errorf("got addr %q source %q token file %q; want %q %q %q", ep.addr, ep.source, ep.tokenFile, tc.addr, tc.source, tc.tokenFile)
			}
		})
	}
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "api.token")
	writeFile(t, good, "from-file\n")
	ep := endpoint{tokenFile: good, tokenFrom: "test"}
	missing := endpoint{tokenFile: filepath.Join(dir, "none"), tokenFrom: "gateway.data_dir in gateway.yaml"}
	cases := []struct {
		name, flag, env string
		ep              endpoint
		want, source    string
		wantErr         []string
	}{
		{"flag", "from-flag", "from-env", ep, "from-flag", "--token", nil},
		{"env", "", "from-env", ep, "from-env", "$DROVER_API_TOKEN", nil},
		{"file", "", "", ep, "from-file", good, nil},
		{"nothing", "", "", missing, "", "", []string{"--token", "$DROVER_API_TOKEN", missing.tokenFile, "gateway.data_dir in gateway.yaml", "no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, src, err := resolveToken(tc.flag, tc.ep, func(k string) string {
				if k == envToken {
					return tc.env
				}
				return ""
			})
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil || tok != tc.want || src != tc.source {
				t.Errorf("got %q from %q (%v), want %q from %q", tok, src, err, tc.want, tc.source)
			}
		})
	}
}

func TestParseAssignments(t *testing.T) {
	cases := []struct {
		args    []string
		want    string // the JSON body
		wantErr bool
	}{
		{[]string{"setpoint=21.5"}, `{"setpoint":21.5}`, false},
		{[]string{"setpoint=21.50"}, `{"setpoint":21.50}`, false}, // number text kept
		{[]string{"on=true", "n=-3"}, `{"n":-3,"on":true}`, false},
		{[]string{`name="x"`}, `{"name":"x"}`, false},
		{[]string{"mode=auto"}, `{"mode":"auto"}`, false},
		{[]string{"mode="}, `{"mode":""}`, false},
		{[]string{"expr=a=b"}, `{"expr":"a=b"}`, false},
		{[]string{"v=1e3"}, `{"v":1e3}`, false},
		{[]string{"v=0x10"}, `{"v":"0x10"}`, false},
		{[]string{"v= 7 "}, `{"v":7}`, false},
		{[]string{"v={"}, `{"v":"{"}`, false},
		{[]string{"setpoint"}, "", true},
		{[]string{"=5"}, "", true},
		{[]string{"a=1", "a=2"}, "", true},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, err := parseAssignments(tc.args)
			if tc.wantErr {
				if err == nil {
					t.Errorf("no error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("body %s, want %s", b, tc.want)
			}
		})
	}
}

// TestDiscoveryEndToEnd runs drover status finding the server each way.
func TestDiscoveryEndToEnd(t *testing.T) {
	clearEnv(t)
	addr := startAPI(t, "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfg, "gateway:\n  id: gw\n  local_api: "+addr+"\n")
	sockPath := filepath.Join(dir, "api.sock")
	sockAddr := startAPI(t, "unix:"+sockPath)

	t.Run("flag", func(t *testing.T) { wantStatusOK(t, "status", "--api", addr) })
	t.Run("unix socket flag", func(t *testing.T) { wantStatusOK(t, "status", "--api", sockAddr) })
	t.Run("config file", func(t *testing.T) { wantStatusOK(t, "status", "-c", cfg) })
	t.Run("env", func(t *testing.T) {
		t.Setenv(envAPI, addr)
		wantStatusOK(t, "status")
	})
	t.Run("flag beats a wrong env", func(t *testing.T) {
		t.Setenv(envAPI, "unix:"+filepath.Join(dir, "wrong.sock"))
		wantStatusOK(t, "status", "--api", addr)
	})
	t.Run("env token", func(t *testing.T) {
		t.Setenv(envToken, apiToken)
		wantStatusOK(t, "write", "pump-1", "setpoint=1", "--api", addr)
	})
	t.Run("scan over the unix socket", func(t *testing.T) {
		wantStatusOK(t, "scan", "rs485-1", "--api", sockAddr, "--token", apiToken)
	})
}

func wantStatusOK(t *testing.T, args ...string) {
	t.Helper()
	stdout, stderr, code := drover(args...)
	if code != 0 {
		t.Fatalf("drover %v: exit %d\n%s%s", args, code, stdout, stderr)
	}
}

// TestScanStreamGarbage feeds followScan broken streams.
func TestScanStreamGarbage(t *testing.T) {
	cases := []struct {
		name, stream, wantErr string
	}{
		{"empty", "", "without a summary"},
		{"not JSON", "hello\n", "bad line"},
		{"progress then EOF", `{"type":"progress","address":1}` + "\n", "without a summary"},
		{"bad progress", `{"type":"progress","address":"x"}` + "\n", "bad progress line"},
		{"bad summary", `{"type":"summary","found":true}` + "\n", "bad summary line"},
		{"unknown types ignored", `{"type":"hint"}` + "\n" + `{"type":"summary","bus":"b","probed":0,"found":[]}` + "\n", ""},
		{"summary with error", `{"type":"summary","bus":"b","error":"plugin down","code":"unavailable"}` + "\n", "plugin down"},
		{"blank lines", "\n\n" + `{"type":"summary","bus":"b","found":[]}` + "\n", ""},
		{"huge line", strings.Repeat("x", maxScanLine+10) + "\n", "too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tl := &tools{stdout: &out, stderr: &out}
			err := tl.followScan(strings.NewReader(tc.stream), false)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("err %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestForeignServer points the CLI at servers that are not a drover
// gateway: every answer must become one clear error line.
func TestForeignServer(t *testing.T) {
	clearEnv(t)
	cases := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"html page", 200, "<html>hello</html>", "is $ADDR a drover gateway?"},
		{"html error", 500, "<html>oops</html>", "500 Internal Server Error"},
		{"JSON of another shape", 200, `{"gatewayId": 5}`, "not what drover expects"},
		{"error without message", 404, `{"code":"x"}`, "404 Not Found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			stdout, stderr, code := drover("status", "--api", addr)
			want := strings.ReplaceAll(tc.wantErr, "$ADDR", addr)
			if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "drover: ") || !strings.Contains(stderr, want) ||
				strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d stdout %q stderr %q; want one line mentioning %q", code, stdout, stderr, want)
			}
		})
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7080": "127.0.0.1:7080", "localhost:7080": "localhost:7080", "[::1]:7080": "[::1]:7080",
		"unix:/run/d.sock": "unix:/run/d.sock", " 127.0.0.1:1 ": "127.0.0.1:1",
	} {
		got, err := dialAddr(in)
		if err != nil || got != want {
			t.Errorf("dialAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "localhost", "127.0.0.1:", "unix:", "http://", "::::"} {
		if got, err := dialAddr(bad); err == nil {
			t.Errorf("dialAddr(%q) = %q, want an error", bad, got)
		}
	}
}
