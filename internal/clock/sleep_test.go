package clock

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, time.Millisecond) || !Sleep(ctx, 0) {
		t.Fatal("Sleep on a live context reported it ended")
	}
	cancel()
	if Sleep(ctx, 0) || Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context reported a full sleep")
	}
}
