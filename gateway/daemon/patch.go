package daemon

// mergeInto applies a JSON merge patch to doc in place (null deletes).
func mergeInto(doc, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(doc, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			dm, ok := doc[k].(map[string]any)
			if !ok {
				dm = map[string]any{}
				doc[k] = dm
			}
			mergeInto(dm, pm)
			continue
		}
		doc[k] = v
	}
}

// compose merges patch p2 over patch p1 (in place) so that applying the
// result equals applying p1 then p2. Unlike mergeInto it keeps nulls: they
// must still delete on the hub. Later values win per key; order of keys is
// irrelevant.
func compose(p1, p2 map[string]any) {
	for k, v := range p2 {
		if pm, ok := v.(map[string]any); ok {
			if dm, ok := p1[k].(map[string]any); ok {
				compose(dm, pm)
				continue
			}
			p1[k] = deepCopy(pm)
			continue
		}
		p1[k] = v
	}
}

func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if vm, ok := v.(map[string]any); ok {
			out[k] = deepCopy(vm)
		} else {
			out[k] = v
		}
	}
	return out
}
