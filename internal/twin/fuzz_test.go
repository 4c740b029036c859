package twin

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// checkMeta verifies the metadata invariants of a section: tags have none;
// otherwise every object level has a node, every key has a node, nodes of
// non-object values hold only $ fields, no node outlives its key, and a
// parent is never older than its children.
func checkMeta(k Kind, s Section) error {
	if k == Tags {
		if s.Meta != nil {
			return fmt.Errorf("tags have metadata %v", s.Meta)
		}
		return nil
	}
	return checkNode(k, s.Version, "$metadata", s.Props, s.Meta)
}

func checkNode(k Kind, ver int64, path string, v any, node map[string]any) error {
	if node == nil {
		return fmt.Errorf("%s: missing node", path)
	}
	ts, ok := node[KeyLastUpdated].(string)
	if !ok || len(ts) != len(TimeLayout) {
		return fmt.Errorf("%s: bad $lastUpdated %v", path, node[KeyLastUpdated])
	}
	lv, hasVer := node[KeyLastUpdatedVersion]
	if k == Reported && hasVer {
		return fmt.Errorf("%s: reported node has $lastUpdatedVersion", path)
	}
	var nodeVer int64
	if hasVer {
		n, ok := lv.(json.Number)
		if !ok {
			return fmt.Errorf("%s: $lastUpdatedVersion %T is not a json.Number", path, lv)
		}
		i, err := n.Int64()
		if err != nil || i < 1 || i > ver {
			return fmt.Errorf("%s: $lastUpdatedVersion %v outside [1, %d]", path, n, ver)
		}
		nodeVer = i
	}
	obj, isObj := v.(map[string]any)
	for key, child := range node {
		if strings.HasPrefix(key, "$") {
			continue
		}
		if !isObj {
			return fmt.Errorf("%s: node of a non-object has child %q", path, key)
		}
		if _, ok := obj[key]; !ok {
			return fmt.Errorf("%s: node for deleted key %q", path, key)
		}
		cn, ok := child.(map[string]any)
		if !ok {
			return fmt.Errorf("%s.%s: node is %T", path, key, child)
		}
		if cts, _ := cn[KeyLastUpdated].(string); cts > ts {
			return fmt.Errorf("%s.%s: child stamped %s after its parent %s", path, key, cts, ts)
		}
		if cv, ok := cn[KeyLastUpdatedVersion].(json.Number); ok && hasVer {
			if i, _ := cv.Int64(); i > nodeVer {
				return fmt.Errorf("%s.%s: child version %d above its parent's %d", path, key, i, nodeVer)
			}
		}
	}
	for key, cv := range obj {
		cn, _ := node[key].(map[string]any)
		if err := checkNode(k, ver, path+"."+key, cv, cn); err != nil {
			return err
		}
	}
	return nil
}

// mergeRef is a plain RFC 7396 MergePatch on deep copies, for comparison.
func mergeRef(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return cloneValue(patch)
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	} else {
		t = cloneValue(t).(map[string]any)
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
		} else {
			t[k] = mergeRef(t[k], v)
		}
	}
	return t
}

// FuzzPatch applies decoded patches to decoded sections and checks that
// nothing panics, failures leave everything untouched and are LimitErrors,
// and successes match RFC 7396, stay valid and keep consistent metadata.
// Seeds live in testdata/fuzz/FuzzPatch.
func FuzzPatch(f *testing.F) {
	f.Add(uint8(Desired), []byte(`{"a":{"b":1},"c":[1,2]}`), []byte(`{"a":{"b":null,"d":{"e":"f"}},"c":null}`))
	f.Add(uint8(Reported), []byte(`{}`), []byte(`{"x":{"y":{"z":[{"k":null}]}}}`))
	f.Add(uint8(Tags), []byte(`{"loc":{"floor":"1"}}`), []byte(`{"loc":"roof"}`))
	f.Fuzz(func(t *testing.T, kind uint8, baseJSON, patchJSON []byte) {
		k := Kind(kind % 4) // 3 is invalid on purpose
		base, err := DecodeObject(baseJSON)
		if err != nil {
			return
		}
		patch, err := DecodeObject(patchJSON)
		if err != nil {
			return
		}
		s, err := NewSection(k, t0).Replace(k, base, t0)
		if err != nil {
			return
		}
		if err := checkMeta(k, s); err != nil {
			t.Fatalf("after Replace(%s): %v", baseJSON, err)
		}
		before := s.Clone()
		patchBefore := cloneValue(patch)

		got, err := s.Patch(k, patch, t1)

		if !reflect.DeepEqual(s, before) {
			t.Fatalf("Patch(%s) changed its receiver", patchJSON)
		}
		if !reflect.DeepEqual(patch, patchBefore) {
			t.Fatalf("Patch(%s) changed the patch", patchJSON)
		}
		if err != nil {
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("Patch(%s) error %v is not a *LimitError", patchJSON, err)
			}
			return
		}
		if got.Version != s.Version+1 {
			t.Fatalf("Version %d after %d", got.Version, s.Version)
		}
		if want := mergeRef(s.Props, patch); !reflect.DeepEqual(got.Props, want) {
			t.Fatalf("Patch(%s) onto %s = %v, RFC 7396 gives %v", patchJSON, baseJSON, got.Props, want)
		}
		if err := Validate(k, got.Props, false); err != nil {
			t.Fatalf("result of Patch(%s) onto %s is invalid: %v", patchJSON, baseJSON, err)
		}
		if err := checkMeta(k, got); err != nil {
			t.Fatalf("Patch(%s) onto %s: %v", patchJSON, baseJSON, err)
		}
		b, err := json.Marshal(got.Document(k, true))
		if err != nil {
			t.Fatalf("marshal Document: %v", err)
		}
		if _, err := DecodeObject(b); err != nil {
			t.Fatalf("Document does not decode again: %v\n%s", err, b)
		}
	})
}
