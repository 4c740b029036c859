package broker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/drover-iot/drover/internal/iothubtopic"
	"github.com/drover-iot/drover/internal/testenv"
)

// TestMosquittoClients proves an independent MQTT 3.1.1 client works:
// mosquitto_sub receives a direct method request, mosquitto_pub sends telemetry,
// and a bad password is refused.
func TestMosquittoClients(t *testing.T) {
	for _, bin := range []string{"mosquitto_sub", "mosquitto_pub"} {
		testenv.RequireTool(t, bin, "Debian mosquitto-clients")
	}
	e := start(t, nil)
	ca := writeCAFile(t)
	_, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	args := func(id, password string, more ...string) []string {
		return append([]string{"-h", "127.0.0.1", "-p", port, "--cafile", ca, "-V", "mqttv311",
			"-i", id, "-u", user(id), "-P", password}, more...)
	}

	t.Run("sub receives method request", func(t *testing.T) {
		var out, errOut bytes.Buffer
		sub := exec.CommandContext(ctx, "mosquitto_sub", args("msub", goodPass, "-t", iothubtopic.FilterMethodRequests, "-C", "1", "-v")...)
		sub.Stdout, sub.Stderr = &out, &errOut
		if err := sub.Start(); err != nil {
			t.Fatal(err)
		}
		e.h.await(t, "connected", "msub")
		// No event tells when the SUBSCRIBE was processed: poll Send with a deadline.
		eventually(t, "mosquitto_sub subscribed", func() bool {
			err := e.b.Send("msub", iothubtopic.MethodRequest("reboot", "7"), []byte(`{"delay":1}`))
			return !errors.Is(err, ErrNotSubscribed)
		})
		if err := sub.Wait(); err != nil {
			t.Fatalf("mosquitto_sub: %v: %s", err, errOut.String())
		}
		if got, want := strings.TrimSpace(out.String()), `$iothub/methods/POST/reboot/?$rid=7 {"delay":1}`; got != want {
			t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
		}
	})

	t.Run("pub sends telemetry", func(t *testing.T) {
		topic := "devices/mpub/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&line=1"
		pub := exec.CommandContext(ctx, "mosquitto_pub", args("mpub", goodPass, "-t", topic, "-m", `{"t":21.5}`, "-q", "1")...)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		ev := e.h.await(t, "telemetry", "mpub")
		if ct, _ := ev.msg.Props.Get(iothubtopic.SysContentType); ct != "application/json" || ev.body != `{"t":21.5}` {
			t.Fatalf("telemetry %+v", ev.msg)
		}
	})

	t.Run("bad password refused", func(t *testing.T) {
		pub := exec.CommandContext(ctx, "mosquitto_pub", args("mbad", "nope", "-t", "devices/mbad/messages/events/", "-m", "x")...)
		out, err := pub.CombinedOutput()
		if err == nil {
			t.Fatalf("mosquitto_pub with a bad password succeeded: %s", out)
		}
		if !strings.Contains(strings.ToLower(string(out)), "not authori") {
			t.Fatalf("unexpected refusal output: %s", out)
		}
	})
}
