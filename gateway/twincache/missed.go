package twincache

import (
	"bytes"

	"github.com/drover-iot/drover/internal/twin"
)

// Missed decides, after a reconnect, whether the desired document fetched
// from the hub must be applied to the device, so that every desired change
// made while the gateway was offline or stopped is applied, and applied
// once.
//
// cachedDesired is the desired document the gateway applied at
// appliedVersion (Twin.Desired after SetApplied); fetchedDesired and
// fetchedVersion come from the twin GET. The hub wins for desired:
//
//   - fetchedVersion > appliedVersion: changes were missed; apply.
//   - fetchedVersion < appliedVersion: the hub's twin is older than what was
//     applied (the identity was re-created or the hub restored); apply the
//     hub's document.
//   - equal versions: nothing was missed, unless the documents differ (a
//     reset hub reached the same number again); then apply.
//
// doc is always the fetched document without $version and $metadata, the
// whole desired section to apply (desired patches are cumulative, so the
// device gets the state, not the history). After applying it the daemon
// calls Put and then SetApplied(fetchedVersion); a crash between applying
// and SetApplied repeats the apply once, which is safe because applying a
// desired configuration is idempotent (non-idempotent actions are jobs).
func Missed(cachedDesired, fetchedDesired map[string]any, appliedVersion, fetchedVersion int64) (apply bool, doc map[string]any) {
	doc = clone(strip(fetchedDesired))
	if fetchedVersion != appliedVersion {
		return true, doc
	}
	return !Equal(strip(cachedDesired), doc), doc
}

// Equal reports whether two documents are the same JSON (key order and
// number spelling as encoded by the twin package).
func Equal(a, b map[string]any) bool {
	ea, err1 := encode(a)
	eb, err2 := encode(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// Diff returns the merge patch that turns from into to (RFC 7396): members
// of to that differ, recursively for objects, and null for members only
// from has. It is empty when the documents are equal. The daemon uses it
// after a reconnect to bring the hub's reported section back to the cached
// one (reported: the gateway wins).
func Diff(from, to map[string]any) map[string]any {
	from, to = strip(from), strip(to)
	patch := map[string]any{}
	for k, tv := range to {
		fv, had := from[k]
		tm, tObj := tv.(map[string]any)
		fm, fObj := fv.(map[string]any)
		switch {
		case had && tObj && fObj:
			if sub := Diff(fm, tm); len(sub) > 0 {
				patch[k] = sub
			}
		case had && sameValue(fv, tv):
		case tObj:
			// from has a non-object (or nothing) here: merging the object
			// into it yields exactly the object.
			patch[k] = clone(tm)
		default:
			patch[k] = tv
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	return patch
}

func sameValue(a, b any) bool {
	ea, err1 := twin.AppendJSON(nil, a)
	eb, err2 := twin.AppendJSON(nil, b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

func clone(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			out[k] = clone(x)
		case []any:
			out[k] = append([]any(nil), x...)
		default:
			out[k] = v
		}
	}
	return out
}
