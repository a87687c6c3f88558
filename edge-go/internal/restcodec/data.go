package restcodec

import (
	"fmt"
	"strconv"
	"strings"
)

// walkData appends the raw form of every element of an OIP JSON `data`
// array to raw, in row-major order, and returns it. The array is either flat,
// holding exactly count elements, or nested exactly as deep as shape with
// every level as long as its dimension.
//
// data must be a valid JSON array: encoding/json has already checked the
// syntax, so the scanner below only has to find where values start and end.
func walkData(data []byte, shape []int64, count int, dt *datatype, raw []byte) ([]byte, error) {
	// A walker of its own rather than a callback: nothing escapes to the
	// heap per request but the raw buffer itself.
	w := walker{s: scanner{b: data}, shape: shape, dt: dt, raw: raw}
	depth := w.s.depth()
	if depth <= 1 {
		return w.raw, w.flat(count)
	}
	if depth != len(shape) {
		return w.raw, fmt.Errorf("data is nested %d deep but shape %s has %d dimensions", depth, formatShape(shape), len(shape))
	}
	w.path = make([]int, len(shape))
	return w.raw, w.nested(0)
}

type walker struct {
	s     scanner
	shape []int64
	dt    *datatype
	raw   []byte
	path  []int // index at each level of nested data, for error messages
	next  int   // flat index of the next element in nested data
}

// visit appends element i.
func (w *walker) visit(i int, e element) error {
	var err error
	if w.raw, err = w.dt.appendRaw(w.raw, e); err != nil {
		return fmt.Errorf("element %d %w", i, err)
	}
	return nil
}

func (w *walker) flat(count int) error {
	w.s.i++ // '['
	n := 0
	if w.s.peek() == ']' {
		w.s.i++
	} else {
		for more := true; more; more = w.s.more() {
			e := w.s.element()
			// Past count, keep scanning only to report how many there were.
			if n < count {
				if err := w.visit(n, e); err != nil {
					return err
				}
			}
			n++
		}
	}
	if n != count {
		return fmt.Errorf("data holds %s, shape %s holds %d", elements(n), formatShape(w.shape), count)
	}
	return nil
}

func (w *walker) nested(dim int) error {
	w.s.i++ // '['
	want := w.shape[dim]
	last := dim == len(w.shape)-1
	n := 0
	if w.s.peek() == ']' {
		w.s.i++
	} else {
		for more := true; more; more = w.s.more() {
			if int64(n) == want {
				return fmt.Errorf("%s holds more than %s, as shape %s wants", w.where(dim), elements(int(want)), formatShape(w.shape))
			}
			w.path[dim] = n
			if last {
				if err := w.visit(w.next, w.s.element()); err != nil {
					return err
				}
				w.next++
			} else {
				if w.s.peek() != '[' {
					return fmt.Errorf("%s[%d] is %s, expected an array", w.where(dim), n, w.s.element().describe())
				}
				if err := w.nested(dim + 1); err != nil {
					return err
				}
			}
			n++
		}
	}
	if int64(n) != want {
		return fmt.Errorf("%s holds %s, shape %s wants %d", w.where(dim), elements(n), formatShape(w.shape), want)
	}
	return nil
}

// where names the array at level dim of nested data, as in data[1][0].
func (w *walker) where(dim int) string {
	var b strings.Builder
	b.WriteString("data")
	for _, i := range w.path[:dim] {
		fmt.Fprintf(&b, "[%d]", i)
	}
	return b.String()
}

// A scanner steps through valid JSON text.
type scanner struct {
	b []byte
	i int
}

// peek skips white space and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// depth counts the '[' that open the value ahead, without consuming them.
func (s *scanner) depth() int {
	start, n := s.i, 0
	for s.peek() == '[' {
		s.i++
		n++
	}
	s.i = start
	return n
}

// more consumes the ',' or ']' after an array element and reports which.
func (s *scanner) more() bool {
	c := s.peek()
	s.i++
	return c == ','
}

// element consumes the value ahead. Arrays and objects are consumed whole:
// they are never valid elements, only reported.
func (s *scanner) element() element {
	kind := s.peek()
	start := s.i
	switch kind {
	case '"':
		s.i = endOfString(s.b, s.i)
		kind = 's'
	case 't':
		s.i += len("true")
	case 'f':
		s.i += len("false")
	case 'n':
		s.i += len("null")
		kind = 'z'
	case '[', '{':
		s.skipComposite()
	default:
		for s.i < len(s.b) && isNumberByte(s.b[s.i]) {
			s.i++
		}
		kind = 'n'
	}
	return element{kind: kind, text: s.b[start:s.i]}
}

// isNumberByte reports whether c can stand in a JSON number.
func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// skipComposite consumes an array or object, strings within it included.
func (s *scanner) skipComposite() {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i = endOfString(s.b, s.i)
			continue
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		}
		s.i++
		if depth == 0 {
			return
		}
	}
}

// endOfString returns the index just past the string that opens at b[i].
func endOfString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// elements counts elements in words: "1 element", "2 elements".
func elements(n int) string {
	if n == 1 {
		return "1 element"
	}
	return strconv.Itoa(n) + " elements"
}

// formatShape writes a shape as a JSON array, as clients write it.
func formatShape(shape []int64) string {
	b := []byte{'['}
	for i, d := range shape {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}
