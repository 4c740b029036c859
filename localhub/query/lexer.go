package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind classifies a token.
type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokKeyword
	tokString
	tokNumber
	tokPunct // ( ) [ ] , . * and the operators
)

// token is one lexical unit. text is the raw source slice; str holds the
// decoded value of a string literal or the upper-cased keyword; num holds a
// number literal as int64 or float64.
type token struct {
	kind tokKind
	pos  int
	text string
	str  string
	num  any
}

// describe renders the token for error messages: `"WHERE"` or `end of query`.
func (t token) describe() string {
	if t.kind == tokEOF {
		return "end of query"
	}
	return strconv.Quote(t.text)
}

// keywords are reserved words of the language, matched case-insensitively.
var keywords = map[string]bool{
	"SELECT": true, "TOP": true, "FROM": true, "WHERE": true, "GROUP": true, "BY": true,
	"AS": true, "AND": true, "OR": true, "NOT": true, "IN": true, "NIN": true,
	"TRUE": true, "FALSE": true, "NULL": true, "UNDEFINED": true,
}

// lexer produces tokens on demand so that an error is reported at the first
// problem the parser reaches, not at a later bad character.
type lexer struct {
	src string
	pos int
}

func isIdentStart(r rune) bool { return r == '_' || r == '$' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool  { return isIdentStart(r) || unicode.IsDigit(r) }

// next returns the next token or a *SyntaxError.
func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			l.pos++
			continue
		}
		break
	}
	start := l.pos
	if l.pos >= len(l.src) {
		return token{kind: tokEOF, pos: start}, nil
	}
	c := l.src[l.pos]
	switch {
	case c == '\'' || c == '"':
		return l.lexString(c)
	case c >= '0' && c <= '9':
		return l.lexNumber()
	}
	switch c {
	case '(', ')', '[', ']', ',', '.', '*', '+', '-', '/', '%':
		l.pos++
		return token{kind: tokPunct, pos: start, text: l.src[start:l.pos]}, nil
	case '=':
		if strings.HasPrefix(l.src[l.pos:], "==") {
			return token{}, errAt(start, `invalid operator "==", use "="`)
		}
		l.pos++
		return token{kind: tokPunct, pos: start, text: "="}, nil
	case '!':
		if strings.HasPrefix(l.src[l.pos:], "!=") {
			l.pos += 2
			return token{kind: tokPunct, pos: start, text: "!="}, nil
		}
		return token{}, errAt(start, `invalid operator "!"`)
	case '<':
		l.pos++
		if l.pos < len(l.src) && (l.src[l.pos] == '=' || l.src[l.pos] == '>') {
			l.pos++
		}
		return token{kind: tokPunct, pos: start, text: l.src[start:l.pos]}, nil
	case '>':
		l.pos++
		if l.pos < len(l.src) && l.src[l.pos] == '=' {
			l.pos++
		}
		return token{kind: tokPunct, pos: start, text: l.src[start:l.pos]}, nil
	}
	r, size := utf8.DecodeRuneInString(l.src[l.pos:])
	if r == utf8.RuneError && size <= 1 {
		return token{}, errAt(start, "invalid UTF-8")
	}
	if !isIdentStart(r) {
		return token{}, errAt(start, fmt.Sprintf("unexpected character %q", r))
	}
	for l.pos < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[l.pos:])
		if !isIdentPart(r) {
			break
		}
		l.pos += size
	}
	text := l.src[start:l.pos]
	if up := strings.ToUpper(text); keywords[up] {
		return token{kind: tokKeyword, pos: start, text: text, str: up}, nil
	}
	return token{kind: tokIdent, pos: start, text: text}, nil
}

// lexString reads a string in single or double quotes with the escapes
// \' \" \\ \/ \b \f \n \r \t \uXXXX [IoT Hub query language, "Expressions
// and conditions"].
func (l *lexer) lexString(quote byte) (token, error) {
	start := l.pos
	l.pos++
	var b strings.Builder
	for {
		if l.pos >= len(l.src) {
			return token{}, errAt(start, "unterminated string")
		}
		c := l.src[l.pos]
		switch {
		case c == quote:
			l.pos++
			return token{kind: tokString, pos: start, text: l.src[start:l.pos], str: b.String()}, nil
		case c == '\\':
			if l.pos+1 >= len(l.src) {
				return token{}, errAt(start, "unterminated string")
			}
			e := l.src[l.pos+1]
			switch e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if l.pos+6 > len(l.src) {
					return token{}, errAt(l.pos, `invalid \u escape`)
				}
				v, err := strconv.ParseUint(l.src[l.pos+2:l.pos+6], 16, 16)
				if err != nil {
					return token{}, errAt(l.pos, `invalid \u escape`)
				}
				r := rune(v)
				if !utf8.ValidRune(r) { // a lone surrogate half
					r = utf8.RuneError
				}
				b.WriteRune(r)
				l.pos += 4
			default:
				return token{}, errAt(l.pos, fmt.Sprintf("invalid escape %q", l.src[l.pos:l.pos+2]))
			}
			l.pos += 2
		default:
			r, size := utf8.DecodeRuneInString(l.src[l.pos:])
			if r == utf8.RuneError && size <= 1 {
				return token{}, errAt(l.pos, "invalid UTF-8")
			}
			b.WriteString(l.src[l.pos : l.pos+size])
			l.pos += size
		}
	}
}

// lexNumber reads a decimal (integer, fraction, exponent) or 0x hex number.
// Integers that fit int64 stay integers; everything else is a float64.
func (l *lexer) lexNumber() (token, error) {
	start := l.pos
	s := l.src
	if strings.HasPrefix(s[l.pos:], "0x") || strings.HasPrefix(s[l.pos:], "0X") {
		l.pos += 2
		for l.pos < len(s) && isHex(s[l.pos]) {
			l.pos++
		}
		text := s[start:l.pos]
		v, err := strconv.ParseInt(text[2:], 16, 64)
		if err != nil || l.identFollows() {
			return token{}, errAt(start, fmt.Sprintf("invalid number %q", l.badNumber(start)))
		}
		return token{kind: tokNumber, pos: start, text: text, num: v}, nil
	}
	isFloat := false
	l.digits()
	if l.pos < len(s) && s[l.pos] == '.' && l.pos+1 < len(s) && isDigit(s[l.pos+1]) {
		isFloat = true
		l.pos++
		l.digits()
	}
	if l.pos < len(s) && (s[l.pos] == 'e' || s[l.pos] == 'E') {
		p := l.pos + 1
		if p < len(s) && (s[p] == '+' || s[p] == '-') {
			p++
		}
		if p < len(s) && isDigit(s[p]) {
			isFloat = true
			l.pos = p
			l.digits()
		}
	}
	if l.identFollows() {
		return token{}, errAt(start, fmt.Sprintf("invalid number %q", l.badNumber(start)))
	}
	text := s[start:l.pos]
	if !isFloat {
		if v, err := strconv.ParseInt(text, 10, 64); err == nil {
			return token{kind: tokNumber, pos: start, text: text, num: v}, nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) {
		return token{}, errAt(start, fmt.Sprintf("number %q out of range", text))
	}
	return token{kind: tokNumber, pos: start, text: text, num: f}, nil
}

func (l *lexer) digits() {
	for l.pos < len(l.src) && isDigit(l.src[l.pos]) {
		l.pos++
	}
}

// identFollows reports whether an identifier character directly follows a
// number, as in 12abc, which is a typo rather than two tokens.
func (l *lexer) identFollows() bool {
	if l.pos >= len(l.src) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.pos:])
	return isIdentPart(r)
}

// badNumber returns the whole malformed word starting at start.
func (l *lexer) badNumber(start int) string {
	end := l.pos
	for end < len(l.src) {
		r, size := utf8.DecodeRuneInString(l.src[end:])
		if !isIdentPart(r) {
			break
		}
		end += size
	}
	return l.src[start:end]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
