// Package query parses the IoT Hub query language and compiles it to SQL
// over localhub's SQLite store.
//
// The pipeline is pure: Parse turns text into a Query (an AST that knows
// nothing about storage), and Compile binds the AST to the devices table and
// emits one SELECT with bound parameters. Running the SQL is the caller's job.
//
// # Semantics
//
// Values are JSON values or undefined (a missing property). A WHERE condition
// matches only when it evaluates to boolean true [IoT Hub query language,
// "WHERE clause"]. Comparisons are defined only between primitives of the
// same JSON type (numbers compare with numbers, strings ordinally with
// strings, booleans with booleans); anything else is undefined. Logical
// operators use three-valued logic in which undefined behaves like SQL NULL,
// so NOT of an undefined comparison is still undefined and does not match.
//
// Two deliberate exceptions, chosen for usefulness and documented in the
// tests: a comparison with the null literal is defined for every defined
// value (x = null is true only for JSON null, x != null is true for any other
// defined value, so `parentScopes != null` works), and IN/NIN is a membership
// test that is undefined only when the left side is undefined or not a
// primitive.
//
// # Compilation strategy
//
// Each expression is compiled into a SQL value (0/1/NULL for booleans) and,
// for boolean expressions, into separate "is true" and "is false" predicates.
// NOT swaps the two, so negation never has to rely on SQL NULL tricks, and a
// comparison of a property with a literal becomes an index-friendly
// `json_extract(col, '$.path') = ? AND json_type(col, '$.path') IN (...)`.
// Every literal is a bound parameter; JSON paths are built by the compiler
// with quoted keys wherever a key is not a plain identifier.
package query
