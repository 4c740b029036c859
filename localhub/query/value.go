package query

import (
	"strconv"
	"strings"
)

// class is what the compiler knows statically about a value's JSON type.
type class int

const (
	cUndef class = iota // always undefined
	cNull               // the null literal
	cBool               // boolean or undefined; val is 0, 1 or NULL
	cNum                // number or undefined; val is a number or NULL
	cStr                // string or undefined; val is text or NULL
	cDyn                // any JSON value or undefined, known only at run time
)

// value is a compiled expression. Invariant: every SQL string of a node
// embeds each child's SQL at most a small constant number of times, and
// boolean operators combine one form of each child, so the SQL grows
// linearly with the query.
type value struct {
	cls class
	// val is the SQL value: 0/1/NULL for cBool, the number or text for cNum
	// and cStr, and json_extract's result for cDyn (text for strings, 1/0
	// for booleans, JSON text for objects and arrays, NULL for null and
	// undefined).
	val string
	// typ (cDyn only) yields the json_type name or NULL when undefined.
	typ string
	// js (cDyn only) yields the value as JSON text or NULL when undefined.
	js string
	// nonNull is true when the value is statically known to be defined.
	nonNull bool
	// truth and falsity (cBool only) are predicates that hold exactly when
	// the value is true, respectively false. Empty means derive from val.
	truth, falsity string
	// agg is true when the expression contains an aggregate.
	agg bool
	// key is the output name used for an un-aliased projection.
	key string
}

var undef = value{cls: cUndef, val: "NULL"}

// undefBool is a boolean expression that is always undefined.
var undefBool = value{cls: cBool, val: "NULL", truth: "0", falsity: "0"}

// constBool is a boolean known at compile time; it needs no parameter.
func constBool(b bool) value {
	if b {
		return value{cls: cBool, val: "1", truth: "1", falsity: "0", nonNull: true}
	}
	return value{cls: cBool, val: "0", truth: "0", falsity: "1", nonNull: true}
}

// pred builds a boolean from its three forms.
func pred(val, truth, falsity string) value {
	return value{cls: cBool, val: val, truth: truth, falsity: falsity}
}

// truthOf is a predicate that holds exactly when v is boolean true.
func truthOf(v value) string {
	switch v.cls {
	case cBool:
		if v.truth != "" {
			return v.truth
		}
		return "(" + v.val + ")"
	case cDyn:
		return "(" + v.typ + " = 'true')"
	}
	return "0"
}

// falsityOf is a predicate that holds exactly when v is boolean false.
func falsityOf(v value) string {
	switch v.cls {
	case cBool:
		if v.falsity != "" {
			return v.falsity
		}
		return "(NOT " + v.val + ")"
	case cDyn:
		return "(" + v.typ + " = 'false')"
	}
	return "0"
}

// boolOf is v as 0/1/NULL: NULL unless v is a boolean.
func boolOf(v value) string {
	switch v.cls {
	case cBool:
		return v.val
	case cDyn:
		return "(CASE " + v.typ + " WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
	}
	return "NULL"
}

// numOf is v as a number or NULL; "" when v is statically never a number.
func numOf(v value) string {
	switch v.cls {
	case cNum:
		return v.val
	case cDyn:
		return "(CASE WHEN " + v.typ + " IN ('integer', 'real') THEN " + v.val + " END)"
	}
	return ""
}

// strOf is v as text or NULL; "" when v is statically never a string.
func strOf(v value) string {
	switch v.cls {
	case cStr:
		return v.val
	case cDyn:
		return "(CASE WHEN " + v.typ + " = 'text' THEN " + v.val + " END)"
	}
	return ""
}

// definedOf is a 0/1 expression telling whether v is defined.
func definedOf(v value) string {
	switch {
	case v.cls == cUndef:
		return "0"
	case v.cls == cNull || v.nonNull:
		return "1"
	case v.cls == cDyn:
		return "(" + v.typ + " IS NOT NULL)"
	}
	return "(" + v.val + " IS NOT NULL)"
}

// typOf yields v's json_type name, or NULL when undefined.
func typOf(v value) string {
	switch v.cls {
	case cNull:
		return "'null'"
	case cBool:
		return "(CASE " + v.val + " WHEN 1 THEN 'true' WHEN 0 THEN 'false' END)"
	case cNum:
		return "nullif(typeof(" + v.val + "), 'null')"
	case cStr:
		if v.nonNull {
			return "'text'"
		}
		return "(CASE WHEN " + v.val + " IS NOT NULL THEN 'text' END)"
	case cDyn:
		return v.typ
	}
	return "NULL"
}

// jsonOf yields v as JSON text, or NULL when undefined.
func jsonOf(v value) string {
	switch v.cls {
	case cNull:
		return "'null'"
	case cBool:
		return "(CASE " + v.val + " WHEN 1 THEN 'true' WHEN 0 THEN 'false' END)"
	case cNum, cStr:
		if v.nonNull {
			return "json_quote(" + v.val + ")"
		}
		return "(CASE WHEN " + v.val + " IS NOT NULL THEN json_quote(" + v.val + ") END)"
	case cDyn:
		return v.js
	}
	return "NULL"
}

// jsonTypes lists the json_type names a static class can have.
func jsonTypes(c class) string {
	switch c {
	case cBool:
		return "('true', 'false')"
	case cNum:
		return "('integer', 'real')"
	case cStr:
		return "('text')"
	}
	return "()"
}

// isPrim reports whether c is a primitive class other than null.
func isPrim(c class) bool { return c == cBool || c == cNum || c == cStr }

// builder accumulates bound parameters while SQL is generated. A parameter
// appears in SQL as a marker "\x00<index>\x00"; finish turns markers into
// "?" and lays out the arguments in text order, so a fragment may be
// embedded more than once, or dropped, without the arguments going astray.
type builder struct {
	args []any
	// resolve binds paths to columns; nil means FROM devices.
	resolve func(*Path) (value, error)
}

func (b *builder) param(v any) string {
	b.args = append(b.args, v)
	return "\x00" + strconv.Itoa(len(b.args)-1) + "\x00"
}

// finish replaces markers with positional placeholders.
func (b *builder) finish(sql string) (string, []any) {
	var out strings.Builder
	args := []any{}
	for {
		i := strings.IndexByte(sql, 0)
		if i < 0 {
			out.WriteString(sql)
			return out.String(), args
		}
		j := strings.IndexByte(sql[i+1:], 0) + i + 1
		n, _ := strconv.Atoi(sql[i+1 : j])
		out.WriteString(sql[:i])
		out.WriteByte('?')
		args = append(args, b.args[n])
		sql = sql[j+1:]
	}
}

// sqlString quotes s as an SQL string literal. Only compiler-built text
// (JSON paths, output keys) goes through here, never a query literal.
func sqlString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// jsonQuote renders s as a JSON string.
func jsonQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
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
	b.WriteByte('"')
	return b.String()
}

// simpleKey reports whether a key can appear unquoted in an SQLite JSON
// path. Such keys are left unquoted so that the generated expressions match
// expression indexes written the natural way, e.g. json_extract(tags,
// '$.location.region').
func simpleKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// jsonPath renders path segments as an SQLite JSON path such as
// $.location."odd-key"[2]. Keys that are not plain identifiers are quoted
// and escaped (SQLite decodes JSON escapes inside quoted path labels).
func jsonPath(segs []Segment) string {
	var b strings.Builder
	b.WriteByte('$')
	for _, s := range segs {
		switch {
		case s.IsIndex:
			b.WriteString("[" + strconv.Itoa(s.Index) + "]")
		case simpleKey(s.Name):
			b.WriteString("." + s.Name)
		default:
			b.WriteString("." + jsonQuote(s.Name))
		}
	}
	return b.String()
}

// docPath is the dynamic value at segs inside the JSON document doc (an SQL
// expression, usually a column).
func docPath(doc string, segs []Segment) value {
	p := sqlString(jsonPath(segs))
	return value{
		cls: cDyn,
		val: "json_extract(" + doc + ", " + p + ")",
		typ: "json_type(" + doc + ", " + p + ")",
		js:  "(" + doc + " -> " + p + ")",
	}
}

// balanced joins terms with op as a balanced tree, so a long AND chain
// adds only log2(n) to SQLite's expression depth.
func balanced(terms []string, op string) string {
	switch len(terms) {
	case 0:
		return ""
	case 1:
		return terms[0]
	}
	m := len(terms) / 2
	return "(" + balanced(terms[:m], op) + " " + op + " " + balanced(terms[m:], op) + ")"
}
