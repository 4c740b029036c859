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
