package outbox

// Compose returns one JSON merge patch equivalent to applying p1 and then p2
// (RFC 7396 §2), when one exists. Later values win per key; nulls are kept,
// because they must still delete on the hub; the order of keys is irrelevant.
// Neither argument is modified; the result shares no maps with them.
//
// RFC 7396 cannot express every composition in a single patch: when p1
// deletes a key or sets it to a non-object (null, scalar or array) and p2
// then sets it to an object, the result of p1-then-p2 is "exactly that
// object", while any single patch would merge the object into whatever the
// hub has. Compose reports ok=false then, and the caller keeps the two
// patches apart (the outbox queues a second row for the identity).
func Compose(p1, p2 map[string]any) (out map[string]any, ok bool) {
	out = clone(p1)
	if !composeInto(out, p2) {
		return nil, false
	}
	return out, true
}

// composeInto merges p2 over dst, which is owned by the caller.
func composeInto(dst, p2 map[string]any) bool {
	for k, v := range p2 {
		pm, isObj := v.(map[string]any)
		if !isObj {
			dst[k] = cloneValue(v) // null, scalar or array: replaces whatever p1 had
			continue
		}
		prev, had := dst[k]
		if !had {
			dst[k] = clone(pm) // p1 left the key alone: p2's patch applies as is
			continue
		}
		dm, prevObj := prev.(map[string]any)
		if !prevObj {
			return false // p1 set k to null or a non-object: not expressible
		}
		if !composeInto(dm, pm) {
			return false
		}
	}
	return true
}

// Apply applies patch to doc in place as RFC 7396 describes: null deletes,
// objects merge recursively, everything else replaces. It is the reference
// the merge tests compare Compose against.
func Apply(doc, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(doc, k)
			continue
		}
		pm, isObj := v.(map[string]any)
		if !isObj {
			doc[k] = cloneValue(v)
			continue
		}
		dm, ok := doc[k].(map[string]any)
		if !ok {
			dm = map[string]any{}
			doc[k] = dm
		}
		Apply(dm, pm)
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return clone(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
