package config

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Problem is one configuration error, located by file, line and key path.
// File is empty for problems in a desired.config overlay, whose Path then
// starts with "desired.config".
type Problem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// String formats the problem as "file:line: path: message"; parts that are
// unknown are left out.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError is returned by Load, Merge and ValidateWithPlugins when the
// configuration has problems. It holds all of them, sorted by file and line.
type LoadError struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// FormatProblems writes one problem per line and a closing count line, the
// output of `drover config check`. It writes nothing but "ok" when there are
// no problems.
func FormatProblems(w io.Writer, problems []Problem) error {
	if len(problems) == 0 {
		_, err := fmt.Fprintln(w, "ok")
		return err
	}
	for _, p := range problems {
		if _, err := fmt.Fprintln(w, p.String()); err != nil {
			return err
		}
	}
	noun := "problems"
	if len(problems) == 1 {
		noun = "problem"
	}
	_, err := fmt.Fprintf(w, "%d %s\n", len(problems), noun)
	return err
}

// problems collects Problems during a load.
type problems struct {
	list []Problem
}

// add records a problem at pos. The message is formatted with args.
func (ps *problems) add(at pos, format string, args ...any) {
	ps.list = append(ps.list, Problem{
		File: at.file, Line: at.line, Column: at.col, Path: at.path,
		Message: fmt.Sprintf(format, args...),
	})
}

func (ps *problems) empty() bool { return len(ps.list) == 0 }

// sorted returns the problems grouped by file in the order the files were
// first mentioned, then by line and column; exact duplicates are dropped.
func (ps *problems) sorted() []Problem {
	rank := map[string]int{}
	for _, p := range ps.list {
		if _, ok := rank[p.File]; !ok {
			rank[p.File] = len(rank)
		}
	}
	out := make([]Problem, 0, len(ps.list))
	seen := map[Problem]bool{}
	for _, p := range ps.list {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank[a.File] != rank[b.File] {
			return rank[a.File] < rank[b.File]
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return out
}

// err returns a *LoadError, or nil when nothing was collected.
func (ps *problems) err() error {
	if ps.empty() {
		return nil
	}
	return &LoadError{Problems: ps.sorted()}
}
