package broker

import "strings"

// matchFilter reports whether an MQTT topic filter matches a topic name.
// Filters starting with a wildcard do not match "$" topics. [MQTT-4.7.2-1]
func matchFilter(filter, topic string) bool {
	if filter == "" || topic == "" {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return !fmore // "#" must be last [MQTT-4.7.1-2]
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a" [MQTT-4.7.1-2]
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// validTopicName reports whether topic can be published: not empty, no
// wildcard, no NUL. [MQTT-4.7.3-1] [MQTT-1.5.3-2]
func validTopicName(topic string) bool {
	return topic != "" && !strings.ContainsAny(topic, "+#\x00")
}
