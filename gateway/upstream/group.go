package upstream

import (
	"sync"
	"time"
)

// Nudge spread: when the hub comes back, the clients of a group that were
// waiting out a backoff reconnect within a window of nudgePerMember per
// member, at most nudgeSpreadMax, so hundreds of children do not all dial
// in the same millisecond (the hub takes about a thousand TLS connects a
// second) but none sleeps on for up to BackoffMax either.
const (
	nudgePerMember = 10 * time.Millisecond
	nudgeSpreadMax = 5 * time.Second
)

// Group ties together the clients of one gateway (its own identity and its
// children), which all reach the same hub. Each client backs off on its own
// after failures, with delays growing to BackoffMax; without a group, a
// child that failed several times during an outage sleeps on for up to a
// minute after the hub is back. With one, the first member to get through
// after every member was down wakes the others that are waiting out a
// backoff. Build it with NewGroup and pass it in Options.Group; the zero
// value is not usable.
type Group struct {
	mu        sync.Mutex
	members   map[*Client]struct{}
	connected int
}

// NewGroup returns an empty group.
func NewGroup() *Group { return &Group{members: map[*Client]struct{}{}} }

func (g *Group) join(c *Client) {
	g.mu.Lock()
	g.members[c] = struct{}{}
	g.mu.Unlock()
}

func (g *Group) leave(c *Client) {
	g.mu.Lock()
	delete(g.members, c)
	g.mu.Unlock()
}

// up records that c has a live connection. When it is the only member
// connected, the hub was unreachable for all of them until now: every other
// member gets a nudge with the spread it should reconnect within.
func (g *Group) up(c *Client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.connected++
	if g.connected != 1 || len(g.members) < 2 {
		return
	}
	spread := min(nudgeSpreadMax, time.Duration(len(g.members))*nudgePerMember)
	for m := range g.members {
		if m != c {
			m.nudge(spread)
		}
	}
}

// down records that one of up's connections ended.
func (g *Group) down() {
	g.mu.Lock()
	g.connected--
	g.mu.Unlock()
}
