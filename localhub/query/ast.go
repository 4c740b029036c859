package query

import (
	"strconv"
	"strings"
)

// Expr is a node of an expression tree. The concrete types are *Path,
// *Literal, *Unary, *Binary, *Logical, *In and *Call. String renders the
// node back to query text that parses to an equal tree.
type Expr interface {
	// Pos is the byte offset of the node in the query text.
	Pos() int
	String() string
	expr()
}

// Segment is one step of a property path: a name (from `.name` or
// `['name']`) or an array index (from `[3]`).
type Segment struct {
	Name    string
	Index   int
	IsIndex bool
	Pos     int
}

// Path is a property path such as tags.location.region. Segments[0] is the
// top-level field and is never an index.
type Path struct {
	At       int
	Segments []Segment
}

// LitKind is the JSON type of a literal.
type LitKind int

// Literal kinds.
const (
	LitUndefined LitKind = iota
	LitNull
	LitBool
	LitNumber
	LitString
)

// Literal is a constant. Value is nil for null and undefined, a bool, an
// int64 or float64 for numbers, or a string.
type Literal struct {
	At    int
	Kind  LitKind
	Value any
}

// Unary is NOT x or -x. Op is "NOT" or "-".
type Unary struct {
	At int
	Op string
	X  Expr
}

// Binary is a comparison (= != <> < > <= >=) or arithmetic (+ - * / %).
type Binary struct {
	At   int
	Op   string
	L, R Expr
}

// Logical is a chain of AND or OR terms. Op is "AND" or "OR"; nested chains
// of the same operator are flattened by the parser.
type Logical struct {
	At    int
	Op    string
	Terms []Expr
}

// In is x IN [c1, c2, ...] or, with Not, x NIN [...] / x NOT IN [...].
type In struct {
	At   int
	X    Expr
	Not  bool
	List []*Literal
}

// Call is a function call; Name is the canonical upper-case name from the
// function registry (STARTSWITH is stored as STARTS_WITH).
type Call struct {
	At   int
	Name string
	Args []Expr
}

// Pos returns the byte offset of the path's first segment.
func (e *Path) Pos() int { return e.At }

// Pos returns the byte offset of the literal (of its minus sign, if any).
func (e *Literal) Pos() int { return e.At }

// Pos returns the byte offset of the operator.
func (e *Unary) Pos() int { return e.At }

// Pos returns the byte offset of the left operand.
func (e *Binary) Pos() int { return e.At }

// Pos returns the byte offset of the first term.
func (e *Logical) Pos() int { return e.At }

// Pos returns the byte offset of the tested expression.
func (e *In) Pos() int { return e.At }

// Pos returns the byte offset of the function name.
func (e *Call) Pos() int { return e.At }

func (*Path) expr()    {}
func (*Literal) expr() {}
func (*Unary) expr()   {}
func (*Binary) expr()  {}
func (*Logical) expr() {}
func (*In) expr()      {}
func (*Call) expr()    {}

// String renders the path with dots, falling back to ['key'] for keys that
// are not plain identifiers.
func (e *Path) String() string {
	var b strings.Builder
	for i, s := range e.Segments {
		switch {
		case s.IsIndex:
			b.WriteString("[" + strconv.Itoa(s.Index) + "]")
		case isPlainName(s.Name):
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.Name)
		default:
			b.WriteString("[" + quoteString(s.Name) + "]")
		}
	}
	return b.String()
}

// isPlainName reports whether s lexes as one identifier that is not a keyword.
func isPlainName(s string) bool {
	if s == "" || keywords[strings.ToUpper(s)] {
		return false
	}
	for i, r := range s {
		if i == 0 && !isIdentStart(r) || !isIdentPart(r) {
			return false
		}
	}
	return true
}

// quoteString renders s as a single-quoted query string literal.
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// String renders the literal in query syntax.
func (e *Literal) String() string {
	switch e.Kind {
	case LitNull:
		return "null"
	case LitBool:
		if b, _ := e.Value.(bool); b {
			return "true"
		}
		return "false"
	case LitNumber:
		switch v := e.Value.(type) {
		case int64:
			return strconv.FormatInt(v, 10)
		case float64:
			s := strconv.FormatFloat(v, 'g', -1, 64)
			if !strings.ContainsAny(s, ".eEn") { // keep it a float when re-parsed
				s += ".0"
			}
			return s
		}
	case LitString:
		s, _ := e.Value.(string)
		return quoteString(s)
	}
	return "undefined"
}

// Precedence levels, loosest first, as the parser climbs them.
const (
	precOr = iota + 1
	precAnd
	precNot
	precCompare
	precAdd
	precMul
	precUnary
	precPrimary
)

func precOf(e Expr) int {
	switch n := e.(type) {
	case *Logical:
		if n.Op == "AND" {
			return precAnd
		}
		return precOr
	case *Unary:
		if n.Op == "NOT" {
			return precNot
		}
		return precUnary
	case *Binary:
		switch n.Op {
		case "+", "-":
			return precAdd
		case "*", "/", "%":
			return precMul
		}
		return precCompare
	case *In:
		return precCompare
	}
	return precPrimary
}

// format renders e, parenthesised only when its precedence is below min, so
// that re-parsing the text yields the same tree at no greater depth.
func format(e Expr, min int) string {
	s := e.String()
	if precOf(e) < min {
		return "(" + s + ")"
	}
	return s
}

// String renders the unary expression.
func (e *Unary) String() string {
	if e.Op == "NOT" {
		return "NOT " + format(e.X, precNot)
	}
	if lit, ok := e.X.(*Literal); ok && lit.Kind == LitNumber {
		return "-(" + lit.String() + ")" // -3 would parse as a literal
	}
	return "-" + format(e.X, precUnary)
}

// String renders the binary expression; arithmetic is left-associative.
func (e *Binary) String() string {
	p := precOf(e)
	if p == precCompare {
		return format(e.L, precAdd) + " " + e.Op + " " + format(e.R, precAdd)
	}
	return format(e.L, p) + " " + e.Op + " " + format(e.R, p+1)
}

// String renders the chain.
func (e *Logical) String() string {
	p := precOf(e)
	parts := make([]string, len(e.Terms))
	for i, t := range e.Terms {
		parts[i] = format(t, p+1)
	}
	return strings.Join(parts, " "+e.Op+" ")
}

// String renders the membership test.
func (e *In) String() string {
	parts := make([]string, len(e.List))
	for i, t := range e.List {
		parts[i] = t.String()
	}
	op := " IN "
	if e.Not {
		op = " NIN "
	}
	return format(e.X, precAdd) + op + "[" + strings.Join(parts, ", ") + "]"
}

// Collection names accepted after FROM.
const (
	FromDevices = "devices"
	FromModules = "devices.modules"
	FromJobs    = "devices.jobs"
)

// SelectItem is one projected expression with its optional AS alias.
type SelectItem struct {
	Expr  Expr
	Alias string
}

// Query is a parsed SELECT statement.
type Query struct {
	// Top is the TOP n limit, or nil when absent.
	Top *int64
	// Star is true for SELECT *; Select is then empty.
	Star   bool
	Select []SelectItem
	// From is one of FromDevices, FromModules or FromJobs.
	From string
	// Where is nil when the query has no WHERE clause.
	Where Expr
	// GroupBy holds the GROUP BY paths, in order.
	GroupBy []Expr
}

// String renders the query in canonical form; parsing it yields an equal
// Query.
func (q *Query) String() string {
	var b strings.Builder
	b.WriteString("SELECT ")
	if q.Top != nil {
		b.WriteString("TOP " + strconv.FormatInt(*q.Top, 10) + " ")
	}
	if q.Star {
		b.WriteString("*")
	}
	for i, it := range q.Select {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(it.Expr.String())
		if it.Alias != "" {
			b.WriteString(" AS " + it.Alias)
		}
	}
	b.WriteString(" FROM " + q.From)
	if q.Where != nil {
		b.WriteString(" WHERE " + q.Where.String())
	}
	for i, g := range q.GroupBy {
		if i == 0 {
			b.WriteString(" GROUP BY ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(g.String())
	}
	return b.String()
}

// String renders the call with its canonical name.
func (e *Call) String() string {
	parts := make([]string, len(e.Args))
	for i, a := range e.Args {
		parts[i] = a.String()
	}
	return e.Name + "(" + strings.Join(parts, ", ") + ")"
}
