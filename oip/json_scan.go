package oip

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// This file holds the JSON scanner under the decoder: whitespace, literals,
// strings, numbers, and skipping of values the decoder does not want.

// maxSkipDepth bounds the nesting of values that are skipped, which the
// skipper walks recursively. Tensor data is walked iteratively at any depth.
const maxSkipDepth = 10000

// decoder scans one JSON header and hands out the binary part after it.
type decoder struct {
	buf     []byte // the JSON header
	pos     int    // offset of the next unread byte of buf
	bin     []byte // the binary part after the header
	binPos  int    // bytes of bin attached so far
	hasBin  bool   // the framing has a binary part (headerLen >= 0)
	scratch []byte // decoded strings that contained escapes or bad UTF-8
}

func (d *decoder) syntaxErrorAt(off int, msg string) error {
	return Errorf(KindInvalidArgument, "invalid JSON at offset %d: %s", off, msg)
}

// unexpected reports the byte at d.pos, or the end of input, as unexpected
// where want was expected.
func (d *decoder) unexpected(want string) error {
	if d.pos >= len(d.buf) {
		return d.syntaxErrorAt(d.pos, "unexpected end of input, expected "+want)
	}
	return d.syntaxErrorAt(d.pos, "unexpected "+quoteByte(d.buf[d.pos])+", expected "+want)
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

// unsafeString views b as a string without copying. The result must not
// outlive b's current contents nor be retained.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (d *decoder) ws() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\n', '\r', '\t':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next byte, or 0 at the end of input (a raw 0 byte is
// invalid JSON anywhere outside a string, so the two never need telling
// apart except for the error message).
func (d *decoder) peek() byte {
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

// literal consumes lit (true, false or null) at d.pos.
func (d *decoder) literal(lit string) error {
	if len(d.buf)-d.pos < len(lit) || string(d.buf[d.pos:d.pos+len(lit)]) != lit {
		return d.unexpected(lit)
	}
	d.pos += len(lit)
	return nil
}

// null consumes a null literal and reports whether there was one.
func (d *decoder) null() (bool, error) {
	d.ws()
	if d.peek() != 'n' {
		return false, nil
	}
	return true, d.literal("null")
}

// beginObject consumes '{' and reports whether a member follows (false when
// the object is empty and its '}' is consumed too).
func (d *decoder) beginObject(what string) (bool, error) {
	d.ws()
	if d.peek() != '{' {
		return false, d.unexpected(what)
	}
	d.pos++
	d.ws()
	if d.peek() == '}' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// key reads a member name and the ':' after it. The result is valid until
// the next string is read.
func (d *decoder) key() ([]byte, error) {
	d.ws()
	if d.peek() != '"' {
		return nil, d.unexpected("object key")
	}
	k, err := d.str()
	if err != nil {
		return nil, err
	}
	d.ws()
	if d.peek() != ':' {
		return nil, d.unexpected("':' after object key")
	}
	d.pos++
	d.ws()
	return k, nil
}

// nextMember consumes the ',' or '}' after a member value and reports
// whether another member follows.
func (d *decoder) nextMember() (bool, error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case '}':
		d.pos++
		return false, nil
	}
	return false, d.unexpected("',' or '}' after object member")
}

// nextElement consumes the ',' or ']' after an array element and reports
// whether another element follows.
func (d *decoder) nextElement() (bool, error) {
	d.ws()
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case ']':
		d.pos++
		return false, nil
	}
	return false, d.unexpected("',' or ']' after array element")
}

// beginArray consumes '[' and reports whether an element follows.
func (d *decoder) beginArray(what string) (bool, error) {
	d.ws()
	if d.peek() != '[' {
		return false, d.unexpected(what)
	}
	d.pos++
	d.ws()
	if d.peek() == ']' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// str reads a JSON string at d.pos and returns its decoded bytes: a
// sub-slice of buf when it needs no decoding, else d.scratch. Either is
// valid until the next call.
func (d *decoder) str() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.unexpected("string")
	}
	buf := d.buf
	start := d.pos + 1
	for i := start; i < len(buf); i++ {
		c := buf[i]
		if c == '"' {
			d.pos = i + 1
			return buf[start:i], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return d.strSlow(start, i)
		}
	}
	return nil, d.syntaxErrorAt(d.pos, "unterminated string")
}

// strSlow decodes the rest of a string from i, where the first escape,
// control character or non-ASCII byte is, into d.scratch.
func (d *decoder) strSlow(start, i int) ([]byte, error) {
	buf := d.buf
	out := append(d.scratch[:0], buf[start:i]...)
	defer func() { d.scratch = out[:0] }()
	for i < len(buf) {
		c := buf[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return out, nil
		case c < 0x20:
			return nil, d.syntaxErrorAt(i, "control character "+quoteByte(c)+" in string")
		case c < utf8.RuneSelf && c != '\\':
			out = append(out, c)
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(buf[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, buf[i:i+size]...)
			}
			i += size
		default: // backslash
			if i+1 >= len(buf) {
				return nil, d.syntaxErrorAt(i, "unterminated string")
			}
			e := buf[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(buf, i)
				if !ok {
					return nil, d.syntaxErrorAt(i-2, `invalid \u escape`)
				}
				i += 4
				if r >= 0xd800 && r < 0xdc00 && i+6 <= len(buf) && buf[i] == '\\' && buf[i+1] == 'u' {
					if r2, ok := hex4(buf, i+2); ok && r2 >= 0xdc00 && r2 < 0xe000 {
						r = (r-0xd800)<<10 | (r2 - 0xdc00) + 0x10000
						i += 6
					}
				}
				if r >= 0xd800 && r < 0xe000 { // lone surrogate
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, d.syntaxErrorAt(i-2, "invalid escape "+quoteByte(e)+" in string")
			}
		}
	}
	return nil, d.syntaxErrorAt(start-1, "unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// stringValue reads a string and returns it as a new string, or old when
// the bytes equal it, so that decoding the same names again allocates
// nothing.
func (d *decoder) stringValue(old string) (string, error) {
	s, err := d.str()
	if err != nil {
		return "", err
	}
	if string(s) == old {
		return old, nil
	}
	return string(s), nil
}

// scanNumber validates a JSON number at d.pos, consumes it, and returns its
// text and whether it is an integer (no fraction, no exponent).
func (d *decoder) scanNumber() (text []byte, isInt bool, err error) {
	buf := d.buf
	start := d.pos
	i := start
	if i < len(buf) && buf[i] == '-' {
		i++
	}
	switch {
	case i < len(buf) && buf[i] == '0':
		i++
	case i < len(buf) && buf[i] >= '1' && buf[i] <= '9':
		for i < len(buf) && buf[i] >= '0' && buf[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, false, d.unexpected("digit")
	}
	isInt = true
	if i < len(buf) && buf[i] == '.' {
		isInt = false
		i++
		j := i
		for i < len(buf) && buf[i] >= '0' && buf[i] <= '9' {
			i++
		}
		if i == j {
			d.pos = i
			return nil, false, d.unexpected("digit after decimal point")
		}
	}
	if i < len(buf) && (buf[i] == 'e' || buf[i] == 'E') {
		isInt = false
		i++
		if i < len(buf) && (buf[i] == '+' || buf[i] == '-') {
			i++
		}
		j := i
		for i < len(buf) && buf[i] >= '0' && buf[i] <= '9' {
			i++
		}
		if i == j {
			d.pos = i
			return nil, false, d.unexpected("digit in exponent")
		}
	}
	d.pos = i
	return buf[start:i], isInt, nil
}

// skipValue validates and skips one JSON value of any kind.
func (d *decoder) skipValue(depth int) error {
	if depth > maxSkipDepth {
		return d.syntaxErrorAt(d.pos, "nesting too deep")
	}
	d.ws()
	switch c := d.peek(); c {
	case '"':
		_, err := d.str()
		return err
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case '{':
		more, err := d.beginObject("object")
		for more && err == nil {
			if _, err = d.key(); err != nil {
				return err
			}
			if err = d.skipValue(depth + 1); err != nil {
				return err
			}
			more, err = d.nextMember()
		}
		return err
	case '[':
		more, err := d.beginArray("array")
		for more && err == nil {
			if err = d.skipValue(depth + 1); err != nil {
				return err
			}
			more, err = d.nextElement()
		}
		return err
	default:
		if c == '-' || c >= '0' && c <= '9' {
			_, _, err := d.scanNumber()
			return err
		}
		return d.unexpected("value")
	}
}

// pow10f64 holds the powers of ten that float64 represents exactly.
var pow10f64 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float reads one float element, a JSON number or one of the strings
// "NaN", "Infinity" and "-Infinity", and returns it rounded to bitSize bits
// (32 or 64) exactly as strconv.ParseFloat does. Values that overflow are
// errors, as they are for strconv.
//
// The fast path is Clinger's: a decimal with at most 19 significant digits
// whose significand m ≤ 2⁵³ and exponent |e| ≤ 22 is m·10^e or m/10^-e,
// one correctly rounded float64 operation on exact operands. For float32
// that float64 is rounded again, which is exact unless the float64 landed
// on a float32 halfway point: only then, and for everything else, strconv
// decides.
func (d *decoder) float(bitSize int, dt DataType, idx int64) (float64, error) {
	buf := d.buf
	start := d.pos
	i := start
	if i < len(buf) && buf[i] == '"' {
		return d.nonFinite(dt, idx)
	}
	neg := false
	if i < len(buf) && buf[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	nd, exp := 0, 0
	exact := true
	if i < len(buf) && buf[i] == '0' {
		i++
	} else if i < len(buf) && buf[i] >= '1' && buf[i] <= '9' {
		for ; i < len(buf) && buf[i] >= '0' && buf[i] <= '9'; i++ {
			if nd < 19 {
				mant = mant*10 + uint64(buf[i]-'0')
				nd++
			} else {
				exp++
				exact = exact && buf[i] == '0'
			}
		}
	} else {
		d.pos = i
		if i == start && i < len(buf) {
			return 0, Errorf(KindInvalidArgument, "element %d at offset %d: %s data must be numbers", idx, i, dt)
		}
		return 0, d.unexpected("digit")
	}
	if i < len(buf) && buf[i] == '.' {
		i++
		j := i
		for ; i < len(buf) && buf[i] >= '0' && buf[i] <= '9'; i++ {
			if nd < 19 {
				mant = mant*10 + uint64(buf[i]-'0')
				exp--
				if mant != 0 {
					nd++
				}
			} else {
				exact = exact && buf[i] == '0'
			}
		}
		if i == j {
			d.pos = i
			return 0, d.unexpected("digit after decimal point")
		}
	}
	if i < len(buf) && (buf[i] == 'e' || buf[i] == 'E') {
		i++
		eneg := false
		if i < len(buf) && (buf[i] == '+' || buf[i] == '-') {
			eneg = buf[i] == '-'
			i++
		}
		j := i
		e := 0
		for ; i < len(buf) && buf[i] >= '0' && buf[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(buf[i]-'0')
			}
		}
		if i == j {
			d.pos = i
			return 0, d.unexpected("digit in exponent")
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	d.pos = i
	if exact && mant <= 1<<53 && exp >= -22 && exp <= 22 {
		f := float64(mant)
		if exp < 0 {
			f /= pow10f64[-exp]
		} else {
			f *= pow10f64[exp]
		}
		if neg {
			f = -f
		}
		if bitSize == 64 {
			return f, nil
		}
		if f == 0 || math.Float64bits(f)&(1<<29-1) != 1<<28 {
			return float64(float32(f)), nil
		}
	}
	f, err := strconv.ParseFloat(unsafeString(buf[start:i]), bitSize)
	if err != nil {
		return 0, Errorf(KindInvalidArgument, "element %d: %s is out of range for %s", idx, buf[start:i], dt)
	}
	return f, nil
}

// nonFinite reads the string form of a non-finite float element.
func (d *decoder) nonFinite(dt DataType, idx int64) (float64, error) {
	s, err := d.str()
	if err != nil {
		return 0, err
	}
	switch string(s) {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	return 0, Errorf(KindInvalidArgument, `element %d: string %q is not a number; %s data takes numbers, "NaN", "Infinity" or "-Infinity"`, idx, s, dt)
}
