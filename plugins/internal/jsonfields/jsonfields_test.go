package jsonfields

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/drover-iot/drover/plugins"
)

// TestEveryProblemOnce decodes an object with a bad value, a bad enum, a
// bad duration and two unknown keys: each is reported once, at its path,
// unknown keys sorted.
func TestEveryProblemOnce(t *testing.T) {
	var errs []plugins.FieldError
	o := Open(json.RawMessage(`{"n": "x", "mode": "z", "t": "soon", "ok": true, "zz": 1, "aa": null, "b": 2}`), "bus", &errs)
	var n int
	var mode string
	var d time.Duration
	var ok bool
	o.Int("n", &n)
	o.OneOf("mode", &mode, "a", "b")
	o.Duration("t", &d)
	o.Bool("ok", &ok)
	o.Skip("b")
	o.Done([]string{"n", "mode", "t", "ok", "b"})
	var got []string
	for _, e := range errs {
		got = append(got, e.Path)
	}
	want := []string{"bus.n", "bus.mode", "bus.t", "bus.aa", "bus.zz"}
	if !reflect.DeepEqual(got, want) || !ok {
		t.Fatalf("problems at %v (%+v), want %v", got, errs, want)
	}
}

func TestNotAnObject(t *testing.T) {
	for _, raw := range []string{``, `null`, `[1]`, `"s"`} {
		var errs []plugins.FieldError
		o := Open(json.RawMessage(raw), "", &errs)
		o.Done(nil)
		if o.OK() || len(errs) != 1 || errs[0].Path != "(document)" {
			t.Errorf("%q: ok %v, problems %+v", raw, o.OK(), errs)
		}
	}
}
