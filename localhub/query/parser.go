package query

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxQueryLength is the longest query text accepted, in bytes [IoT Hub
// quotas: "expression length at most 8192 characters"].
const MaxQueryLength = 8192

// maxDepth bounds expression nesting so that the compiled SQL stays well
// inside SQLite's expression-depth limit (1000) and parsing stays cheap.
const maxDepth = 40

// SyntaxError reports a problem in the query text. Pos is the 0-based byte
// offset where the problem was found.
type SyntaxError struct {
	Pos int
	Msg string
}

// Error renders the error as `query: at 23: expected FROM, found "WHERE"`.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("query: at %d: %s", e.Pos, e.Msg)
}

func errAt(pos int, msg string) *SyntaxError { return &SyntaxError{Pos: pos, Msg: msg} }

// parser is a recursive-descent parser with one token of lookahead.
type parser struct {
	lx    lexer
	tok   token // current token, not yet consumed
	depth int
	// aggOK is true while parsing a select item outside any aggregate call.
	aggOK bool
}

func newParser(src string) (*parser, error) {
	if len(src) > MaxQueryLength {
		return nil, errAt(MaxQueryLength, fmt.Sprintf("query longer than %d bytes", MaxQueryLength))
	}
	p := &parser{lx: lexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p, nil
}

// advance consumes the current token and lexes the next one.
func (p *parser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) isKeyword(kw string) bool { return p.tok.kind == tokKeyword && p.tok.str == kw }
func (p *parser) isPunct(s string) bool    { return p.tok.kind == tokPunct && p.tok.text == s }

func (p *parser) expected(what string) error {
	return errAt(p.tok.pos, "expected "+what+", found "+p.tok.describe())
}

// expectKeyword consumes keyword kw or fails.
func (p *parser) expectKeyword(kw string) error {
	if !p.isKeyword(kw) {
		return p.expected(kw)
	}
	return p.advance()
}

// expectPunct consumes punctuation s or fails.
func (p *parser) expectPunct(s string) error {
	if !p.isPunct(s) {
		return p.expected(strconv.Quote(s))
	}
	return p.advance()
}

// Parse parses a complete query:
//
//	SELECT [TOP n] * | expr [AS alias], ... FROM devices[.modules|.jobs]
//	[WHERE condition] [GROUP BY path, ...]
//
// Errors are *SyntaxError.
func Parse(q string) (*Query, error) {
	p, err := newParser(q)
	if err != nil {
		return nil, err
	}
	out, err := p.parseQuery()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.expected("end of query")
	}
	return out, nil
}

// ParseCondition parses a bare WHERE body, as used by a job's
// queryCondition. The text "*" means every device and yields the literal
// true.
func ParseCondition(cond string) (Expr, error) {
	if strings.TrimSpace(cond) == "*" {
		return &Literal{At: strings.Index(cond, "*"), Kind: LitBool, Value: true}, nil
	}
	p, err := newParser(cond)
	if err != nil {
		return nil, err
	}
	e, err := p.parseExpr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.expected("end of condition")
	}
	return e, nil
}

func (p *parser) parseQuery() (*Query, error) {
	q := &Query{}
	if err := p.expectKeyword("SELECT"); err != nil {
		return nil, err
	}
	if p.isKeyword("TOP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, ok := p.tok.num.(int64)
		if p.tok.kind != tokNumber || !ok || n < 0 {
			return nil, p.expected("a non-negative integer after TOP")
		}
		q.Top = &n
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if err := p.parseSelectList(q); err != nil {
		return nil, err
	}
	if err := p.expectKeyword("FROM"); err != nil {
		return nil, err
	}
	from, err := p.parseCollection()
	if err != nil {
		return nil, err
	}
	q.From = from
	if p.isKeyword("WHERE") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if q.Where, err = p.parseExpr(); err != nil {
			return nil, err
		}
	}
	if p.isKeyword("GROUP") {
		if err := p.advance(); err != nil {
			return nil, err
		}
		if err := p.expectKeyword("BY"); err != nil {
			return nil, err
		}
		for {
			if p.tok.kind != tokIdent {
				return nil, p.expected("a property path")
			}
			g, err := p.parsePath()
			if err != nil {
				return nil, err
			}
			q.GroupBy = append(q.GroupBy, g)
			if !p.isPunct(",") {
				break
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
		}
	}
	return q, nil
}

func (p *parser) parseSelectList(q *Query) error {
	if p.isPunct("*") {
		q.Star = true
		return p.advance()
	}
	if p.isKeyword("FROM") || p.tok.kind == tokEOF {
		return p.expected(`"*" or an expression`)
	}
	for {
		p.aggOK = true
		e, err := p.parseExpr()
		p.aggOK = false
		if err != nil {
			return err
		}
		item := SelectItem{Expr: e}
		if p.isKeyword("AS") {
			if err := p.advance(); err != nil {
				return err
			}
			if p.tok.kind != tokIdent {
				return p.expected("an alias")
			}
			item.Alias = p.tok.text
			if err := p.advance(); err != nil {
				return err
			}
		}
		q.Select = append(q.Select, item)
		if !p.isPunct(",") {
			return nil
		}
		if err := p.advance(); err != nil {
			return err
		}
	}
}

// parseCollection reads devices, devices.modules or devices.jobs,
// case-insensitively.
func (p *parser) parseCollection() (string, error) {
	const want = "devices, devices.modules or devices.jobs"
	start := p.tok
	if start.kind != tokIdent || !strings.EqualFold(start.text, "devices") {
		return "", p.expected(want)
	}
	if err := p.advance(); err != nil {
		return "", err
	}
	if !p.isPunct(".") {
		return FromDevices, nil
	}
	if err := p.advance(); err != nil {
		return "", err
	}
	sub := p.tok
	var from string
	switch {
	case sub.kind == tokIdent && strings.EqualFold(sub.text, "modules"):
		from = FromModules
	case sub.kind == tokIdent && strings.EqualFold(sub.text, "jobs"):
		from = FromJobs
	default:
		return "", errAt(sub.pos, "expected modules or jobs after devices., found "+sub.describe())
	}
	return from, p.advance()
}

// enter guards recursion depth; every call must be paired with leave.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return errAt(p.tok.pos, fmt.Sprintf("expression nested deeper than %d levels", maxDepth))
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// parseExpr parses a full condition or value expression. Precedence, loosest
// first: OR, AND, NOT, comparison and IN, + -, * / %, unary minus.
func (p *parser) parseExpr() (Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.parseLogical("OR", p.parseAnd)
}

func (p *parser) parseAnd() (Expr, error) { return p.parseLogical("AND", p.parseNot) }

// parseLogical parses a chain of op-separated terms into one flat *Logical.
func (p *parser) parseLogical(op string, term func() (Expr, error)) (Expr, error) {
	first, err := term()
	if err != nil || !p.isKeyword(op) {
		return first, err
	}
	l := &Logical{At: first.Pos(), Op: op}
	add := func(e Expr) {
		if sub, ok := e.(*Logical); ok && sub.Op == op {
			l.Terms = append(l.Terms, sub.Terms...)
			return
		}
		l.Terms = append(l.Terms, e)
	}
	add(first)
	for p.isKeyword(op) {
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := term()
		if err != nil {
			return nil, err
		}
		add(e)
	}
	return l, nil
}

func (p *parser) parseNot() (Expr, error) {
	if !p.isKeyword("NOT") {
		return p.parseComparison()
	}
	at := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	return &Unary{At: at, Op: "NOT", X: x}, nil
}

var comparisonOps = map[string]bool{"=": true, "!=": true, "<>": true, "<": true, ">": true, "<=": true, ">=": true}

func (p *parser) parseComparison() (Expr, error) {
	l, err := p.parseAdditive()
	if err != nil {
		return nil, err
	}
	switch {
	case p.tok.kind == tokPunct && comparisonOps[p.tok.text]:
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := p.parseAdditive()
		if err != nil {
			return nil, err
		}
		return &Binary{At: l.Pos(), Op: op, L: l, R: r}, nil
	case p.isKeyword("IN"), p.isKeyword("NIN"), p.isKeyword("NOT"):
		not := !p.isKeyword("IN")
		if p.isKeyword("NOT") {
			if err := p.advance(); err != nil {
				return nil, err
			}
			if !p.isKeyword("IN") {
				return nil, p.expected("IN after NOT")
			}
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		list, err := p.parseConstArray()
		if err != nil {
			return nil, err
		}
		return &In{At: l.Pos(), X: l, Not: not, List: list}, nil
	}
	return l, nil
}

// parseConstArray parses [c1, c2, ...] of constants; the list may not be
// empty.
func (p *parser) parseConstArray() ([]*Literal, error) {
	if err := p.expectPunct("["); err != nil {
		return nil, err
	}
	if p.isPunct("]") {
		return nil, errAt(p.tok.pos, "empty IN list")
	}
	var out []*Literal
	for {
		lit, err := p.parseConstant()
		if err != nil {
			return nil, err
		}
		out = append(out, lit)
		if p.isPunct("]") {
			return out, p.advance()
		}
		if err := p.expectPunct(","); err != nil {
			return nil, err
		}
	}
}

// parseConstant parses a literal, allowing a leading minus on numbers.
func (p *parser) parseConstant() (*Literal, error) {
	if p.isPunct("-") {
		at := p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokNumber {
			return nil, p.expected("a number after -")
		}
		lit := negate(at, p.tok)
		return lit, p.advance()
	}
	lit, ok := p.literal()
	if !ok {
		return nil, p.expected("a constant")
	}
	return lit, p.advance()
}

// literal converts the current token into a literal without consuming it.
func (p *parser) literal() (*Literal, bool) {
	t := p.tok
	switch t.kind {
	case tokString:
		return &Literal{At: t.pos, Kind: LitString, Value: t.str}, true
	case tokNumber:
		return &Literal{At: t.pos, Kind: LitNumber, Value: t.num}, true
	case tokKeyword:
		switch t.str {
		case "TRUE":
			return &Literal{At: t.pos, Kind: LitBool, Value: true}, true
		case "FALSE":
			return &Literal{At: t.pos, Kind: LitBool, Value: false}, true
		case "NULL":
			return &Literal{At: t.pos, Kind: LitNull}, true
		case "UNDEFINED":
			return &Literal{At: t.pos, Kind: LitUndefined}, true
		}
	}
	return nil, false
}

// negate builds the literal -t for a number token, keeping the minimum
// int64 an integer.
func negate(at int, t token) *Literal {
	if t.text != "" && !strings.HasPrefix(t.text, "0x") && !strings.HasPrefix(t.text, "0X") {
		if v, err := strconv.ParseInt("-"+t.text, 10, 64); err == nil {
			return &Literal{At: at, Kind: LitNumber, Value: v}
		}
	}
	switch v := t.num.(type) {
	case int64:
		return &Literal{At: at, Kind: LitNumber, Value: -v}
	case float64:
		return &Literal{At: at, Kind: LitNumber, Value: -v}
	}
	return &Literal{At: at, Kind: LitNumber, Value: int64(0)}
}

func (p *parser) parseAdditive() (Expr, error) {
	return p.parseArith([]string{"+", "-"}, p.parseMultiplicative)
}

func (p *parser) parseMultiplicative() (Expr, error) {
	return p.parseArith([]string{"*", "/", "%"}, p.parseUnary)
}

// parseArith parses a left-associative chain of the given operators.
func (p *parser) parseArith(ops []string, operand func() (Expr, error)) (Expr, error) {
	l, err := operand()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokPunct && contains(ops, p.tok.text) {
		op := p.tok.text
		if err := p.enter(); err != nil { // a chain deepens the tree too
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		r, err := operand()
		if err != nil {
			return nil, err
		}
		l = &Binary{At: l.Pos(), Op: op, L: l, R: r}
	}
	return l, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) parseUnary() (Expr, error) {
	if !p.isPunct("-") {
		return p.parsePrimary()
	}
	at := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokNumber { // fold -3 into a literal
		lit := negate(at, p.tok)
		return lit, p.advance()
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	return &Unary{At: at, Op: "-", X: x}, nil
}

func (p *parser) parsePrimary() (Expr, error) {
	if lit, ok := p.literal(); ok {
		return lit, p.advance()
	}
	switch {
	case p.isPunct("("):
		if err := p.advance(); err != nil {
			return nil, err
		}
		e, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		return e, p.expectPunct(")")
	case p.tok.kind == tokIdent:
		if p.peekByte() == '(' {
			return p.parseCall()
		}
		return p.parsePath()
	}
	return nil, p.expected("an expression")
}

// peekByte returns the first non-blank byte after the current token.
func (p *parser) peekByte() byte {
	s := p.lx.src
	for i := p.lx.pos; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

// parsePath parses name(.name | [index] | ['key'])*. After a dot any
// identifier is a name, keywords included.
func (p *parser) parsePath() (*Path, error) {
	path := &Path{At: p.tok.pos}
	path.Segments = append(path.Segments, Segment{Name: p.tok.text, Pos: p.tok.pos})
	if err := p.advance(); err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isPunct("."):
			if err := p.advance(); err != nil {
				return nil, err
			}
			if p.tok.kind != tokIdent && p.tok.kind != tokKeyword {
				return nil, p.expected("a property name after .")
			}
			path.Segments = append(path.Segments, Segment{Name: p.tok.text, Pos: p.tok.pos})
		case p.isPunct("["):
			if err := p.advance(); err != nil {
				return nil, err
			}
			seg := Segment{Pos: p.tok.pos}
			switch n, ok := p.tok.num.(int64); {
			case p.tok.kind == tokString:
				seg.Name = p.tok.str
			case p.tok.kind == tokNumber && ok && n >= 0 && n <= 1<<31-1:
				seg.Index, seg.IsIndex = int(n), true
			default:
				return nil, p.expected("a property name string or array index")
			}
			if err := p.advance(); err != nil {
				return nil, err
			}
			if !p.isPunct("]") {
				return nil, p.expected(`"]"`)
			}
			path.Segments = append(path.Segments, seg)
		default:
			return path, nil
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
}

// parseCall parses NAME(args) for a function in the registry, checking
// arity and where aggregates may appear.
func (p *parser) parseCall() (Expr, error) {
	nameTok := p.tok
	fn, ok := lookupFunc(nameTok.text)
	if !ok {
		return nil, errAt(nameTok.pos, fmt.Sprintf("unknown function %q", nameTok.text))
	}
	if fn.aggregate && !p.aggOK {
		return nil, errAt(nameTok.pos, fmt.Sprintf("aggregate %s is allowed only in the SELECT list", fn.name))
	}
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil { // name
		return nil, err
	}
	if err := p.advance(); err != nil { // (
		return nil, err
	}
	call := &Call{At: nameTok.pos, Name: fn.name}
	saved := p.aggOK
	if fn.aggregate {
		p.aggOK = false // no aggregates inside aggregates
	}
	defer func() { p.aggOK = saved }()
	for !p.isPunct(")") {
		if len(call.Args) > 0 {
			if err := p.expectPunct(","); err != nil {
				return nil, err
			}
		}
		a, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		call.Args = append(call.Args, a)
	}
	if len(call.Args) != fn.arity {
		return nil, errAt(nameTok.pos, fmt.Sprintf("%s takes %d argument%s, got %d",
			fn.name, fn.arity, plural(fn.arity), len(call.Args)))
	}
	return call, p.advance()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
