package outbox

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/drover-iot/drover/internal/twin"
)

func obj(t testing.TB, s string) map[string]any {
	t.Helper()
	m, err := twin.DecodeObject([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func enc(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := twin.AppendJSON(nil, m)
	if err != nil {
		t.Fatalf("encode %v: %v", m, err)
	}
	return string(b)
}

func TestCompose(t *testing.T) {
	cases := []struct {
		name   string
		p1, p2 string
		want   string // "" when not composable
	}{
		{"disjoint keys", `{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		{"latest wins", `{"a":1}`, `{"a":2}`, `{"a":2}`},
		{"null kept as delete", `{"a":1}`, `{"a":null}`, `{"a":null}`},
		{"delete then set scalar", `{"a":null}`, `{"a":3}`, `{"a":3}`},
		{"nested merge", `{"p":{"t":1,"h":2}}`, `{"p":{"t":5}}`, `{"p":{"h":2,"t":5}}`},
		{"nested null", `{"p":{"t":1}}`, `{"p":{"t":null,"x":{"y":1}}}`, `{"p":{"t":null,"x":{"y":1}}}`},
		{"object replaced by scalar", `{"p":{"t":1}}`, `{"p":7}`, `{"p":7}`},
		{"array replaces", `{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
		{"key order irrelevant", `{"b":{"y":1,"x":2},"a":1}`, `{"a":2,"b":{"x":3}}`, `{"a":2,"b":{"x":3,"y":1}}`},
		{"empty second", `{"a":1}`, `{}`, `{"a":1}`},
		{"null then object", `{"a":null}`, `{"a":{"b":1}}`, ""},
		{"scalar then object", `{"a":1}`, `{"a":{"b":1}}`, ""},
		{"deep null then object", `{"a":{"b":null}}`, `{"a":{"b":{"c":1}}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p1, p2 := obj(t, c.p1), obj(t, c.p2)
			p1Before, p2Before := enc(t, p1), enc(t, p2)
			got, ok := Compose(p1, p2)
			if enc(t, p1) != p1Before || enc(t, p2) != p2Before {
				t.Fatalf("Compose(%s, %s) modified its arguments", c.p1, c.p2)
			}
			if c.want == "" {
				if ok {
					t.Fatalf("Compose(%s, %s) = %s, want not composable", c.p1, c.p2, enc(t, got))
				}
				return
			}
			if !ok {
				t.Fatalf("Compose(%s, %s): not composable, want %s", c.p1, c.p2, c.want)
			}
			if g := enc(t, got); g != c.want {
				t.Fatalf("Compose(%s, %s) = %s, want %s", c.p1, c.p2, g, c.want)
			}
		})
	}
}

// TestComposeEquivalent checks the defining property on random patches:
// applying Compose(p1, p2) to any document equals applying p1 then p2.
func TestComposeEquivalent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	composable := 0
	for i := range 5000 {
		doc, p1, p2 := randDoc(r, 3, false), randDoc(r, 3, true), randDoc(r, 3, true)
		c, ok := Compose(p1, p2)
		if !ok {
			continue
		}
		composable++
		want := cloneValue(doc).(map[string]any)
		Apply(want, p1)
		Apply(want, p2)
		got := cloneValue(doc).(map[string]any)
		Apply(got, c)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: doc %s p1 %s p2 %s: composed %s gives %s, sequential gives %s",
				i, js(doc), js(p1), js(p2), js(c), js(got), js(want))
		}
	}
	if composable < 1000 {
		t.Fatalf("only %d of 5000 random pairs composable; generator too narrow", composable)
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func randDoc(r *rand.Rand, depth int, nulls bool) map[string]any {
	m := map[string]any{}
	for range r.IntN(4) {
		k := fmt.Sprintf("k%d", r.IntN(4))
		switch n := r.IntN(10); {
		case n < 3 && depth > 0:
			m[k] = randDoc(r, depth-1, nulls)
		case n < 5 && nulls:
			m[k] = nil
		case n < 6:
			m[k] = []any{json.Number(fmt.Sprint(r.IntN(3)))}
		default:
			m[k] = json.Number(fmt.Sprint(r.IntN(5)))
		}
	}
	return m
}
