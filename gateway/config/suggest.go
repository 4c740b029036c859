package config

import (
	"fmt"
	"sort"
	"strings"
)

// suggest finds the known word closest to word. close reports whether it is
// close enough to be a typo (one edit for words up to five letters, two for
// longer ones, ignoring case, - and _); hint is the text to append to an
// "unknown key" message: a "did you mean" when close, else the valid keys.
func suggest(word string, known []string) (close bool, hint string) {
	best, dist := closest(word, known)
	if best != "" && dist <= typoDistance(word) {
		return true, fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(known) == 0 {
		return false, ""
	}
	ks := append([]string(nil), known...)
	sort.Strings(ks)
	return false, " (valid keys: " + strings.Join(ks, ", ") + ")"
}

// didYouMean returns ` (did you mean "x"?)` when one of known is a likely
// typo of word, else "".
func didYouMean(word string, known []string) string {
	best, dist := closest(word, known)
	if best != "" && dist <= typoDistance(word)+1 {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func typoDistance(word string) int {
	if len(word) <= 5 {
		return 1
	}
	return 2
}

func closest(word string, known []string) (string, int) {
	norm := func(s string) string {
		return strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(s))
	}
	w := norm(word)
	best, dist := "", 1<<30
	for _, k := range known {
		if d := editDistance(w, norm(k)); d < dist {
			best, dist = k, d
		}
	}
	return best, dist
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of neighbours each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		if a == b {
			return 0
		}
		return 1 << 20
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
