package smpsim

import (
	"testing"

	"github.com/drover-iot/drover/internal/smp"
)

func TestBasicCommands(t *testing.T) {
	path, dev := ServePTY(t, Config{LogInterval: -1})
	h := dial(t, path, false)
	h.echo("hello")

	var params smp.ParamsRsp
	if err := smp.DecodeResponse(h.do(smp.OpRead, smp.Version2, smp.GroupOS, smp.OSParams, nil).Body, &params); err != nil {
		t.Fatal(err)
	}
	if params.BufSize != 384 || params.BufCount != 4 {
		t.Fatalf("params %+v", params)
	}
	var st smp.ImageStateRsp
	if err := smp.DecodeResponse(h.do(smp.OpRead, smp.Version2, smp.GroupImage, smp.ImageState, nil).Body, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Images) != 1 || st.Images[0].Version != "1.0.0" || !st.Images[0].Active || !st.Images[0].Confirmed || len(st.Images[0].Hash) != 32 {
		t.Fatalf("image list %+v", st)
	}
	// The host can read an answer before the device has counted it.
	waitCounters(t, dev, "three requests answered", func(c Counters) bool { return c.Requests == 3 && c.Responses == 3 })
}
