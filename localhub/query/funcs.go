package query

import "strings"

// funcDef describes one function of the language.
type funcDef struct {
	name      string // canonical upper-case name
	arity     int
	aggregate bool
	compile   func(args []value) value
}

// funcs is the function registry, keyed by upper-case name; aliases point
// at the same definition. IS_DEFINED is documented for twin queries; the
// other scalar functions come from the routing-query function list [IoT Hub
// query language, "Functions"], and STARTSWITH/ENDSWITH are accepted as
// spellings of STARTS_WITH/ENDS_WITH.
var funcs = map[string]*funcDef{}

func init() {
	defs := []*funcDef{
		{name: "IS_DEFINED", arity: 1, compile: isDefined},
		{name: "IS_NULL", arity: 1, compile: typeTest("null")},
		{name: "IS_BOOL", arity: 1, compile: typeTest("true", "false")},
		{name: "IS_NUMBER", arity: 1, compile: typeTest("integer", "real")},
		{name: "IS_STRING", arity: 1, compile: typeTest("text")},
		{name: "IS_OBJECT", arity: 1, compile: typeTest("object")},
		{name: "IS_ARRAY", arity: 1, compile: typeTest("array")},
		{name: "IS_PRIMITIVE", arity: 1, compile: typeTest("null", "true", "false", "integer", "real", "text")},
		{name: "STARTS_WITH", arity: 2, compile: startsWith},
		{name: "ENDS_WITH", arity: 2, compile: endsWith},
		{name: "CONTAINS", arity: 2, compile: containsFn},
		{name: "LOWER", arity: 1, compile: stringFn(cStr, "lower")},
		{name: "UPPER", arity: 1, compile: stringFn(cStr, "upper")},
		{name: "LENGTH", arity: 1, compile: stringFn(cNum, "length")},
		{name: "COUNT", arity: 0, aggregate: true, compile: func([]value) value {
			return value{cls: cNum, val: "count(*)", nonNull: true, agg: true}
		}},
		{name: "SUM", arity: 1, aggregate: true, compile: numericAgg("sum")},
		{name: "AVG", arity: 1, aggregate: true, compile: numericAgg("avg")},
		{name: "MIN", arity: 1, aggregate: true, compile: numericAgg("min")},
		{name: "MAX", arity: 1, aggregate: true, compile: numericAgg("max")},
	}
	for _, d := range defs {
		funcs[d.name] = d
	}
	funcs["STARTSWITH"] = funcs["STARTS_WITH"]
	funcs["ENDSWITH"] = funcs["ENDS_WITH"]
}

// lookupFunc finds a function by name, case-insensitively.
func lookupFunc(name string) (*funcDef, bool) {
	f, ok := funcs[strings.ToUpper(name)]
	return f, ok
}

// isDefined is true for any assigned value, null included; never undefined.
func isDefined(a []value) value {
	switch d := definedOf(a[0]); d {
	case "0", "1":
		return constBool(d == "1")
	default:
		return pred(d, d, "(NOT "+d+")")
	}
}

// typeTest builds IS_xxx: true when the value's json_type is one of types,
// false otherwise (undefined included).
func typeTest(types ...string) func([]value) value {
	set := "('" + strings.Join(types, "', '") + "')"
	has := func(t string) bool {
		for _, x := range types {
			if x == t {
				return true
			}
		}
		return false
	}
	return func(a []value) value {
		v := a[0]
		var match bool
		switch v.cls {
		case cDyn:
			return pred("coalesce("+v.typ+" IN "+set+", 0)", "("+v.typ+" IN "+set+")",
				"(coalesce("+v.typ+", '') NOT IN "+set+")")
		case cUndef:
			return constBool(false)
		case cNull:
			return constBool(has("null"))
		case cBool:
			match = has("true")
		case cNum:
			match = has("integer")
		case cStr:
			match = has("text")
		}
		if !match {
			return constBool(false)
		}
		return isDefined(a)
	}
}

// startsWith is STARTS_WITH(s, prefix), ordinal and case-sensitive.
func startsWith(a []value) value {
	s, p := strOf(a[0]), strOf(a[1])
	if s == "" || p == "" {
		return undefBool
	}
	head := "substr(" + s + ", 1, length(" + p + "))"
	return pred("("+head+" = "+p+")", "("+head+" = "+p+")", "("+head+" <> "+p+")")
}

// endsWith is ENDS_WITH(s, suffix), ordinal and case-sensitive.
func endsWith(a []value) value {
	s, p := strOf(a[0]), strOf(a[1])
	if s == "" || p == "" {
		return undefBool
	}
	v := "(length(" + s + ") >= length(" + p + ") AND substr(" + s + ", length(" + s + ") - length(" + p + ") + 1) = " + p + ")"
	return pred(v, v, "(NOT "+v+")")
}

// containsFn is CONTAINS(s, part), ordinal and case-sensitive.
func containsFn(a []value) value {
	s, p := strOf(a[0]), strOf(a[1])
	if s == "" || p == "" {
		return undefBool
	}
	v := "(instr(" + s + ", " + p + ") > 0)"
	return pred(v, v, "(instr("+s+", "+p+") = 0)")
}

// stringFn applies an SQL function to a string argument. SQLite's lower and
// upper fold ASCII letters only; length counts code points.
func stringFn(out class, sqlFn string) func([]value) value {
	return func(a []value) value {
		s := strOf(a[0])
		if s == "" {
			return undef
		}
		return value{cls: out, val: sqlFn + "(" + s + ")", nonNull: a[0].nonNull}
	}
}

// numericAgg aggregates the numeric values of its argument, ignoring
// everything else; over no numbers the result is undefined.
func numericAgg(sqlFn string) func([]value) value {
	return func(a []value) value {
		n := numOf(a[0])
		if n == "" {
			return value{cls: cUndef, val: "NULL", agg: true}
		}
		return value{cls: cNum, val: sqlFn + "(" + n + ")", agg: true}
	}
}
