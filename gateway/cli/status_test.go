package cli

import (
	"strings"
	"testing"

	"github.com/drover-iot/drover/gateway/localapi"
)

// TestRenderStatusOutbox: the outbox line tells a technician where the
// queued messages are (memory, spill log) and what crashes lost.
func TestRenderStatusOutbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    localapi.OutboxStatus
		want []string
		not  []string
	}{
		{"healthy spill", localapi.OutboxStatus{Depth: 3, Bytes: 300, Durability: "spill", InMemory: 3},
			[]string{"3 waiting", "durability spill, 3 in memory"}, []string{"spill log", "lost"}},
		{"uplink down", localapi.OutboxStatus{Depth: 1200, Bytes: 250000, Durability: "spill", InMemory: 40, InSpillLog: 1160, LostInMemory: 7},
			[]string{"1200 waiting", "40 in memory", "1160 in the spill log", "7 lost in memory by crashes"}, nil},
		{"batched", localapi.OutboxStatus{Depth: 5, Durability: "batched"}, []string{"durability batched"}, []string{"spill log"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			o := tc.o
			renderStatus(&b, localapi.Status{GatewayID: "gw-1", Outbox: &o})
			var line string
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(l, "outbox") {
					line = l
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("outbox line %q lacks %q", line, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(line, w) {
					t.Errorf("outbox line %q has %q", line, w)
				}
			}
		})
	}
}
