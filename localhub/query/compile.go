package query

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnsupported is returned (wrapped) by Compile for valid queries the
// compiler cannot run yet, such as FROM devices.modules.
var ErrUnsupported = errors.New("query: not supported")

// Kind tells the caller what a Plan's rows hold.
type Kind int

const (
	// KindTwins plans select one column, device_id, in device_id order; the
	// caller loads the full twins.
	KindTwins Kind = iota + 1
	// KindRows plans select one TEXT column, item, holding a JSON object
	// per row (projections and aggregates).
	KindRows
	// KindDeviceJobs plans select one TEXT column, item, holding a
	// devices.jobs record (jobs.go).
	KindDeviceJobs
)

// String names the kind as the x-ms-item-type header would: twin or raw.
func (k Kind) String() string {
	switch k {
	case KindTwins:
		return "twin"
	case KindRows:
		return "raw"
	case KindDeviceJobs:
		return "deviceJob"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Plan is a compiled query: one complete SELECT over the devices table with
// positional "?" parameters bound to Args in order. It can be used as a
// subquery, e.g. SELECT * FROM (<SQL>) LIMIT ? OFFSET ?, with the paging
// arguments appended after Args. Row order is deterministic: device_id for
// twins and projections, the group keys for GROUP BY.
type Plan struct {
	Kind Kind
	SQL  string
	Args []any
}

// concatChunk keeps each concat_ws call under SQLite's default limit of
// 127 function arguments; longer projections nest calls.
const concatChunk = 100

// Compile turns q into SQL over the devices table. Problems tied to a
// position in the query (an unknown property, a projection that is not
// grouped) are *SyntaxError; FROM devices.modules wraps ErrUnsupported.
// FROM devices.jobs compiles to a KindDeviceJobs plan (jobs.go).
func Compile(q *Query) (*Plan, error) {
	if q == nil {
		return nil, errors.New("query: compile: nil query")
	}
	if q.From == FromJobs {
		return compileJobs(q)
	}
	if q.From != FromDevices {
		return nil, fmt.Errorf("compile query from %s: %w", q.From, ErrUnsupported)
	}
	b := &builder{}
	var where string
	if q.Where != nil {
		v, err := b.compileCondition(q.Where)
		if err != nil {
			return nil, err
		}
		where = " WHERE " + truthOf(v)
	}
	var limit string
	if q.Top != nil {
		limit = " LIMIT " + b.param(*q.Top)
	}
	var sql string
	switch {
	case q.Star:
		if len(q.GroupBy) > 0 {
			return nil, errAt(q.GroupBy[0].Pos(), "GROUP BY needs a projection, not SELECT *")
		}
		sql = "SELECT device_id FROM devices" + where + " ORDER BY device_id" + limit
		s, args := b.finish(sql)
		return &Plan{Kind: KindTwins, SQL: s, Args: args}, nil
	case len(q.Select) == 0:
		return nil, errors.New("query: compile: empty SELECT list")
	}
	item, agg, err := b.projection(q)
	if err != nil {
		return nil, err
	}
	sql = "SELECT " + item + " AS item FROM devices" + where
	switch {
	case len(q.GroupBy) > 0:
		var keys []string
		for _, g := range q.GroupBy {
			v, err := b.compile(g)
			if err != nil {
				return nil, err
			}
			keys = append(keys, groupKeys(v)...)
		}
		k := strings.Join(keys, ", ")
		sql += " GROUP BY " + k + " ORDER BY " + k
	case !agg:
		sql += " ORDER BY device_id"
	}
	s, args := b.finish(sql + limit)
	return &Plan{Kind: KindRows, SQL: s, Args: args}, nil
}

// CompileCondition compiles a WHERE body (for example a job's
// queryCondition) into an SQL predicate over the devices table that holds
// exactly when the condition is true, with positional "?" parameters.
func CompileCondition(e Expr) (where string, args []any, err error) {
	if e == nil {
		return "", nil, errors.New("query: compile condition: nil expression")
	}
	b := &builder{}
	v, err := b.compileCondition(e)
	if err != nil {
		return "", nil, err
	}
	where, args = b.finish(truthOf(v))
	return where, args, nil
}

func (b *builder) compileCondition(e Expr) (value, error) {
	v, err := b.compile(e)
	if err != nil {
		return value{}, err
	}
	if v.agg {
		return value{}, errAt(e.Pos(), "aggregates are not allowed in a condition")
	}
	return v, nil
}

// projection builds the JSON object expression for the SELECT list and
// checks the grouping rules: with GROUP BY or an aggregate, every property
// outside an aggregate must be a GROUP BY expression.
func (b *builder) projection(q *Query) (string, bool, error) {
	groups := map[string]bool{}
	for _, g := range q.GroupBy {
		groups[g.String()] = true
	}
	anyAgg := false
	vals := make([]value, len(q.Select))
	for i, it := range q.Select {
		v, err := b.compile(it.Expr)
		if err != nil {
			return "", false, err
		}
		vals[i] = v
		anyAgg = anyAgg || v.agg
	}
	if anyAgg || len(q.GroupBy) > 0 {
		for _, it := range q.Select {
			if p := ungrouped(it.Expr, groups); p != nil {
				return "", false, errAt(p.Pos(), fmt.Sprintf("%s must be inside an aggregate or listed in GROUP BY", p))
			}
		}
	}
	seen := map[string]bool{}
	parts := make([]string, 0, len(vals))
	for i, v := range vals {
		key := q.Select[i].Alias
		if key == "" {
			key = v.key
		}
		if key == "" {
			key = "$" + strconv.Itoa(i+1)
		}
		if seen[key] {
			return "", false, errAt(q.Select[i].Expr.Pos(), fmt.Sprintf("duplicate output name %q; use AS", key))
		}
		seen[key] = true
		js := jsonOf(v)
		if js == "NULL" {
			continue // always undefined: the key is omitted, as for a missing property
		}
		parts = append(parts, "("+sqlString(jsonQuote(key)+":")+" || "+js+")")
	}
	return "('{' || " + concatWS(parts) + " || '}')", anyAgg, nil
}

// concatWS joins non-NULL parts with commas, nesting concat_ws calls to
// stay under SQLite's function argument limit.
func concatWS(parts []string) string {
	if len(parts) == 0 {
		return "''"
	}
	if len(parts) <= concatChunk {
		return "concat_ws(',', " + strings.Join(parts, ", ") + ")"
	}
	var chunks []string
	for len(parts) > 0 {
		n := min(concatChunk, len(parts))
		chunks = append(chunks, "nullif("+concatWS(parts[:n])+", '')")
		parts = parts[n:]
	}
	return concatWS(chunks)
}

// ungrouped returns the first path in e that is neither inside an aggregate
// nor (part of) a GROUP BY expression.
func ungrouped(e Expr, groups map[string]bool) Expr {
	if groups[e.String()] {
		return nil
	}
	switch n := e.(type) {
	case *Path:
		return n
	case *Call:
		if f, ok := lookupFunc(n.Name); ok && f.aggregate {
			return nil
		}
		for _, a := range n.Args {
			if p := ungrouped(a, groups); p != nil {
				return p
			}
		}
	case *Unary:
		return ungrouped(n.X, groups)
	case *Binary:
		if p := ungrouped(n.L, groups); p != nil {
			return p
		}
		return ungrouped(n.R, groups)
	case *Logical:
		for _, t := range n.Terms {
			if p := ungrouped(t, groups); p != nil {
				return p
			}
		}
	case *In:
		return ungrouped(n.X, groups)
	}
	return nil
}

// compile turns an expression into a value.
func (b *builder) compile(e Expr) (value, error) {
	switch n := e.(type) {
	case *Path:
		if n == nil || len(n.Segments) == 0 {
			return value{}, errors.New("query: compile: empty path")
		}
		if b.resolve != nil {
			return b.resolve(n)
		}
		return resolveDevicePath(n)
	case *Literal:
		return b.literal(n), nil
	case *Unary:
		x, err := b.compile(n.X)
		if err != nil {
			return value{}, err
		}
		switch n.Op {
		case "NOT":
			return withAgg(pred("(NOT "+boolOf(x)+")", falsityOf(x), truthOf(x)), x.agg), nil
		case "-":
			num := numOf(x)
			if num == "" {
				return withAgg(undef, x.agg), nil
			}
			return value{cls: cNum, val: "(- " + num + ")", nonNull: x.nonNull, agg: x.agg}, nil
		}
		return value{}, errAt(n.At, fmt.Sprintf("unknown unary operator %q", n.Op))
	case *Binary:
		l, err := b.compile(n.L)
		if err != nil {
			return value{}, err
		}
		r, err := b.compile(n.R)
		if err != nil {
			return value{}, err
		}
		var v value
		switch n.Op {
		case "+", "-", "*", "/", "%":
			v = arith(n.Op, l, r)
		case "=", "!=", "<>", "<", ">", "<=", ">=":
			v = compare(n.Op, l, r)
		default:
			return value{}, errAt(n.At, fmt.Sprintf("unknown operator %q", n.Op))
		}
		return withAgg(v, l.agg || r.agg), nil
	case *Logical:
		return b.logical(n)
	case *In:
		x, err := b.compile(n.X)
		if err != nil {
			return value{}, err
		}
		return withAgg(b.in(x, n.List, n.Not), x.agg), nil
	case *Call:
		f, ok := lookupFunc(n.Name)
		if !ok {
			return value{}, errAt(n.At, fmt.Sprintf("unknown function %q", n.Name))
		}
		if len(n.Args) != f.arity {
			return value{}, errAt(n.At, fmt.Sprintf("%s takes %d argument%s, got %d", f.name, f.arity, plural(f.arity), len(n.Args)))
		}
		args := make([]value, len(n.Args))
		anyAgg := false
		for i, a := range n.Args {
			v, err := b.compile(a)
			if err != nil {
				return value{}, err
			}
			if f.aggregate && v.agg {
				return value{}, errAt(a.Pos(), "aggregates cannot be nested")
			}
			args[i], anyAgg = v, anyAgg || v.agg
		}
		return withAgg(f.compile(args), anyAgg), nil
	case nil:
		return value{}, errors.New("query: compile: nil expression")
	}
	return value{}, fmt.Errorf("query: compile: unknown expression type %T", e)
}

func withAgg(v value, agg bool) value {
	v.agg = v.agg || agg
	return v
}

// literal binds a constant as a parameter.
func (b *builder) literal(n *Literal) value {
	switch n.Kind {
	case LitNull:
		return value{cls: cNull, val: "NULL", nonNull: true}
	case LitBool:
		if v, ok := n.Value.(bool); ok {
			return value{cls: cBool, val: b.param(v), nonNull: true}
		}
	case LitNumber:
		switch v := n.Value.(type) {
		case int64:
			return value{cls: cNum, val: b.param(v), nonNull: true}
		case float64:
			return value{cls: cNum, val: b.param(v), nonNull: true}
		}
	case LitString:
		if v, ok := n.Value.(string); ok {
			return value{cls: cStr, val: b.param(v), nonNull: true}
		}
	}
	return undef
}

// logical compiles an AND/OR chain with SQL three-valued logic, in which
// undefined behaves like NULL [IoT Hub query language, "WHERE clause"].
func (b *builder) logical(n *Logical) (value, error) {
	if len(n.Terms) == 0 {
		return value{}, errAt(n.At, "empty "+n.Op+" chain")
	}
	vals, truths, falsities := make([]string, len(n.Terms)), make([]string, len(n.Terms)), make([]string, len(n.Terms))
	agg := false
	for i, t := range n.Terms {
		v, err := b.compile(t)
		if err != nil {
			return value{}, err
		}
		vals[i], truths[i], falsities[i] = boolOf(v), truthOf(v), falsityOf(v)
		agg = agg || v.agg
	}
	switch n.Op {
	case "AND":
		return withAgg(pred(balanced(vals, "AND"), balanced(truths, "AND"), balanced(falsities, "OR")), agg), nil
	case "OR":
		return withAgg(pred(balanced(vals, "OR"), balanced(truths, "OR"), balanced(falsities, "AND")), agg), nil
	}
	return value{}, errAt(n.At, fmt.Sprintf("unknown logical operator %q", n.Op))
}

// arith applies + - * / % to numbers; anything else is undefined.
// Division is always real; % truncates its operands to integers (SQLite).
func arith(op string, l, r value) value {
	a, c := numOf(l), numOf(r)
	if a == "" || c == "" {
		return undef
	}
	switch op {
	case "/":
		return value{cls: cNum, val: "(CAST(" + a + " AS REAL) / " + c + ")"}
	case "%":
		return value{cls: cNum, val: "(" + a + " % " + c + ")"}
	}
	return value{cls: cNum, val: "(" + a + " " + op + " " + c + ")", nonNull: l.nonNull && r.nonNull}
}

// sqlOps maps comparison operators to SQL, and negated to their negation.
var (
	sqlOps  = map[string]string{"=": "=", "!=": "<>", "<>": "<>", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
	negated = map[string]string{"=": "<>", "<>": "=", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
)

// compare compiles a comparison. It is defined only between primitives of
// the same JSON type; ordering of strings is ordinal (SQLite BINARY). The
// null literal is the exception: x = null is true for JSON null and false
// for any other defined value, x != null the reverse.
func compare(op string, l, r value) value {
	op = sqlOps[op]
	neg := negated[op]
	switch {
	case l.cls == cUndef || r.cls == cUndef:
		return undefBool
	case l.cls == cNull || r.cls == cNull:
		if op != "=" && op != "<>" {
			return undefBool
		}
		other := l
		if l.cls == cNull {
			other = r
		}
		if other.cls == cNull {
			return constBool(op == "=")
		}
		if other.cls == cDyn {
			isNull, notNull := "("+other.typ+" = 'null')", "("+other.typ+" <> 'null')"
			if op == "<>" {
				isNull, notNull = notNull, isNull
			}
			return pred(isNull, isNull, notNull)
		}
		// A static primitive is never null: the result is false (= null)
		// or true (!= null) whenever it is defined.
		d := definedOf(other)
		if op == "=" {
			return pred("(CASE WHEN "+d+" THEN 0 END)", "0", d)
		}
		return pred("(CASE WHEN "+d+" THEN 1 END)", d, "0")
	case isPrim(l.cls) && isPrim(r.cls):
		if l.cls != r.cls {
			return undefBool
		}
		return pred("("+l.val+" "+op+" "+r.val+")", "("+l.val+" "+op+" "+r.val+")", "("+l.val+" "+neg+" "+r.val+")")
	case l.cls == cDyn && isPrim(r.cls), isPrim(l.cls) && r.cls == cDyn:
		d, s := l, r
		if d.cls != cDyn {
			d, s = r, l
		}
		guard := "(" + d.typ + " IN " + jsonTypes(s.cls) + ")"
		cmp := "(" + l.val + " " + op + " " + r.val + ")"
		ncmp := "(" + l.val + " " + neg + " " + r.val + ")"
		return pred("(CASE WHEN "+guard+" THEN "+cmp+" END)", "("+cmp+" AND "+guard+")", "("+ncmp+" AND "+guard+")")
	case l.cls == cDyn && r.cls == cDyn:
		cls := func(t string) string {
			return "(CASE " + t + " WHEN 'integer' THEN 'n' WHEN 'real' THEN 'n' WHEN 'text' THEN 's'" +
				" WHEN 'true' THEN 'b' WHEN 'false' THEN 'b' END)"
		}
		nullCase := "NULL"
		if op == "=" || op == "<>" {
			nullCase = "(" + l.typ + " " + op + " " + r.typ + ")"
		}
		v := "(CASE WHEN " + l.typ + " IS NULL OR " + r.typ + " IS NULL THEN NULL" +
			" WHEN " + l.typ + " = 'null' OR " + r.typ + " = 'null' THEN " + nullCase +
			" WHEN " + cls(l.typ) + " = " + cls(r.typ) + " THEN (" + l.val + " " + op + " " + r.val + ") END)"
		return pred(v, v, "(NOT "+v+")")
	}
	return undefBool
}

// in compiles x IN [...] (or NIN when not). It is a membership test:
// undefined when x is undefined or not a primitive, otherwise true exactly
// when x equals an element of the same JSON type.
func (b *builder) in(x value, list []*Literal, not bool) value {
	var strs, nums, bools []string
	hasNull := false
	for _, lit := range list {
		v := b.literal(lit)
		switch v.cls {
		case cStr:
			strs = append(strs, v.val)
		case cNum:
			nums = append(nums, v.val)
		case cBool:
			bools = append(bools, v.val)
		case cNull:
			hasNull = true
		}
	}
	group := map[class][]string{cStr: strs, cNum: nums, cBool: bools}
	var res value
	switch {
	case x.cls == cUndef:
		return undefBool
	case x.cls == cNull:
		res = constBool(hasNull)
	case isPrim(x.cls):
		items := group[x.cls]
		if len(items) == 0 {
			d := definedOf(x)
			if d == "1" {
				res = constBool(false)
			} else {
				res = pred("(CASE WHEN "+d+" THEN 0 END)", "0", d)
			}
			break
		}
		set := "(" + strings.Join(items, ", ") + ")"
		res = pred("("+x.val+" IN "+set+")", "("+x.val+" IN "+set+")", "("+x.val+" NOT IN "+set+")")
	case x.cls == cDyn:
		var parts []string
		for _, c := range []class{cStr, cNum, cBool} {
			if items := group[c]; len(items) > 0 {
				parts = append(parts, "("+x.val+" IN ("+strings.Join(items, ", ")+") AND "+x.typ+" IN "+jsonTypes(c)+")")
			}
		}
		if hasNull {
			parts = append(parts, "("+x.typ+" = 'null')")
		}
		truth := "0"
		if len(parts) > 0 {
			truth = balanced(parts, "OR")
		}
		prim := "(" + x.typ + " IN ('null', 'true', 'false', 'integer', 'real', 'text'))"
		res = pred("(CASE WHEN "+prim+" THEN coalesce("+truth+", 0) END)", truth,
			"("+prim+" AND NOT coalesce("+truth+", 0))")
	default:
		return undefBool
	}
	if not {
		return pred("(NOT "+res.val+")", res.falsity, res.truth)
	}
	return res
}

// groupKeys are the SQL expressions a GROUP BY path groups on: the JSON type
// rank and the value, so that 1 and 1.0 share a group but 1 and "1" do not.
func groupKeys(v value) []string {
	switch v.cls {
	case cDyn:
		rank := "(CASE " + v.typ + " WHEN 'null' THEN 0 WHEN 'true' THEN 1 WHEN 'false' THEN 1" +
			" WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'text' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END)"
		return []string{rank, v.val}
	case cUndef, cNull:
		return []string{"NULL"}
	}
	return []string{v.val}
}

// IndexHint lists the SQL expressions over the devices table that the
// compiler emits for one property path. An expression index built on them,
// CREATE INDEX name ON devices(<Filter>) or ON devices(<GroupBy...>), is
// matched by SQLite's planner for comparisons and IN (Filter) and for
// GROUP BY on that path (GroupBy).
type IndexHint struct {
	Filter  string
	GroupBy []string
}

// IndexFor returns the index expressions for a property path such as
// "tags.location.region".
func IndexFor(path string) (IndexHint, error) {
	e, err := ParseCondition(path)
	if err != nil {
		return IndexHint{}, err
	}
	p, ok := e.(*Path)
	if !ok {
		return IndexHint{}, errAt(0, "expected a property path")
	}
	v, err := resolveDevicePath(p)
	if err != nil {
		return IndexHint{}, err
	}
	return IndexHint{Filter: v.val, GroupBy: groupKeys(v)}, nil
}
