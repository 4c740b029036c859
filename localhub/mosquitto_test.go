package localhub_test

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/internal/testenv"
	"github.com/drover-iot/drover/localhub/hubtest"
)

// Debian's mosquitto clients are an independent MQTT implementation: if they
// can act as an Azure device against localhub, so can other clients.
func mosquittoArgs(t *testing.T, env *hubtest.Env, id, key string) []string {
	host, port, _ := strings.Cut(env.MQTTAddr, ":")
	return []string{"-V", "311", "-h", host, "-p", port, "--cafile", env.CAFile,
		"-i", id, "-u", env.Hostname + "/" + id + "/?api-version=2021-04-12", "-P", env.Token(t, id, key, time.Hour)}
}

func needBinary(t *testing.T, name string) string {
	t.Helper()
	return testenv.RequireTool(t, name, "Debian mosquitto-clients")
}

func TestMosquittoClientsAsDevice(t *testing.T) {
	rr := needBinary(t, "mosquitto_rr")
	sub := needBinary(t, "mosquitto_sub")
	env := hubtest.Start(t)
	a := newAPI(t, env)
	dev := env.CreateDevice(t, "mq-1")
	a.must(200, "PATCH", "/twins/mq-1", `{"properties":{"desired":{"interval":10}}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Twin GET: request on one topic, reply on $iothub/twin/res/# to the same connection.
	out, err := exec.CommandContext(ctx, rr, append(mosquittoArgs(t, env, "mq-1", dev.PrimaryKey),
		"-t", "$iothub/twin/GET/?$rid=42", "-e", "$iothub/twin/res/200/?$rid=42", "-m", "", "-W", "20", "-v")...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_rr twin GET: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "$iothub/twin/res/200/?$rid=42") || !strings.Contains(string(out), `"interval":10`) {
		t.Fatalf("twin GET reply: %s", out)
	}

	// Reported PATCH: the reply carries the new $version.
	out, err = exec.CommandContext(ctx, rr, append(mosquittoArgs(t, env, "mq-1", dev.PrimaryKey),
		"-t", "$iothub/twin/PATCH/properties/reported/?$rid=7", "-e", "$iothub/twin/res/204/?$rid=7&$version=2", "-m", `{"firmware":"1.2.3"}`, "-W", "20", "-v")...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_rr reported PATCH: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "$iothub/twin/res/204/?$rid=7&$version=2") {
		t.Fatalf("reported PATCH reply: %s", out)
	}
	rep := a.must(200, "GET", "/twins/mq-1", nil).json(t)["properties"].(map[string]any)["reported"].(map[string]any)
	if rep["firmware"] != "1.2.3" {
		t.Fatalf("reported not stored: %v", rep)
	}

	// Desired notification: mosquitto_sub waits (-C 1) while the service patches desired.
	// stdbuf: mosquitto_sub block-buffers stdout when it is a pipe, and we read it line by line.
	args := append([]string{"-oL", sub}, mosquittoArgs(t, env, "mq-1", dev.PrimaryKey)...)
	cmd := exec.CommandContext(ctx, "stdbuf", append(args, "-t", "$iothub/twin/PATCH/properties/desired/#", "-C", "1", "-v", "-d")...)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var got []string
	subscribed := false
	for sc.Scan() {
		line := sc.Text()
		got = append(got, line)
		if !subscribed && strings.Contains(line, "received SUBACK") {
			subscribed = true
			a.must(200, "PATCH", "/twins/mq-1", `{"properties":{"desired":{"interval":30}}}`)
		}
		if strings.HasPrefix(line, "$iothub/twin/PATCH/properties/desired/?$version=3 ") {
			if !strings.Contains(line, `"interval":30`) || !strings.Contains(line, `"$version":3`) {
				t.Fatalf("desired notification: %s", line)
			}
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, strings.Join(got, "\n"))
	}
	if !subscribed {
		t.Fatalf("mosquitto_sub never subscribed:\n%s", strings.Join(got, "\n"))
	}

	// ACL: the same tool cannot subscribe to another device's cloud-to-device topic.
	out, _ = exec.CommandContext(ctx, sub, append(mosquittoArgs(t, env, "mq-1", dev.PrimaryKey),
		"-t", "devices/other/messages/devicebound/#", "-C", "1", "-W", "3", "-d")...).CombinedOutput()
	if !strings.Contains(string(out), "Subscribed (mid: 1): 128") {
		t.Fatalf("unexpected output subscribing to another device's topic: %s", out)
	}
}
