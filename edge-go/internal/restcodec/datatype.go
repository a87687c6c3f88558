package restcodec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// An element is one scalar of a JSON `data` array as it stands in the text,
// classified by its first byte. Keeping the text rather than decoding into
// interface{} lets each datatype parse it exactly once, at its own precision.
type element struct {
	kind byte   // 'n' number, 's' string, 't' true, 'f' false, 'z' null, '[' array, '{' object
	text []byte // the JSON literal, quotes included for strings
}

// describe names what the element is, for error messages.
func (e element) describe() string {
	switch e.kind {
	case 'n':
		return "a number"
	case 's':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'z':
		return "null"
	case '[':
		return "an array"
	default:
		return "an object"
	}
}

// A datatype is one OIP tensor datatype: how wide its raw elements are and how
// an element crosses between JSON and raw little-endian bytes.
type datatype struct {
	name string
	// size is the width of one raw element in bytes; 0 for BYTES, whose
	// elements each carry a 4-byte little-endian length (Triton's raw format).
	size int
	// appendRaw appends the raw form of one JSON element. Its error completes
	// the sentence "element 3 ...".
	appendRaw func(dst []byte, e element) ([]byte, error)
	// appendJSON appends the JSON form of the raw element raw[:size]; nil for
	// BYTES, whose elements have no fixed width.
	appendJSON func(dst, raw []byte) []byte
}

// datatypes lists every OIP datatype, in the specification's order, which is
// also the order error messages offer them in.
var datatypes = []*datatype{
	{name: "BOOL", size: 1, appendRaw: appendBoolRaw, appendJSON: appendBoolJSON},
	integerType("UINT8", 8, false),
	integerType("UINT16", 16, false),
	integerType("UINT32", 32, false),
	integerType("UINT64", 64, false),
	integerType("INT8", 8, true),
	integerType("INT16", 16, true),
	integerType("INT32", 32, true),
	integerType("INT64", 64, true),
	{name: "FP16", size: 2, appendRaw: appendFP16Raw, appendJSON: appendFP16JSON},
	{name: "FP32", size: 4, appendRaw: appendFP32Raw, appendJSON: appendFP32JSON},
	{name: "FP64", size: 8, appendRaw: appendFP64Raw, appendJSON: appendFP64JSON},
	{name: "BYTES", size: 0, appendRaw: appendBytesRaw},
}

var datatypesByName = func() map[string]*datatype {
	m := make(map[string]*datatype, len(datatypes))
	for _, dt := range datatypes {
		m[dt.name] = dt
	}
	return m
}()

// lookupDatatype finds a datatype by its OIP name, which is case-sensitive.
func lookupDatatype(name string) (*datatype, error) {
	if dt, ok := datatypesByName[name]; ok {
		return dt, nil
	}
	names := make([]string, len(datatypes))
	for i, dt := range datatypes {
		names[i] = dt.name
	}
	return nil, fmt.Errorf("unknown datatype %q, expected one of %s", name, strings.Join(names, ", "))
}

func appendBoolRaw(dst []byte, e element) ([]byte, error) {
	switch e.kind {
	case 't':
		return append(dst, 1), nil
	case 'f':
		return append(dst, 0), nil
	}
	return dst, fmt.Errorf("is %s, expected true or false for BOOL", e.describe())
}

func appendBoolJSON(dst, raw []byte) []byte {
	return strconv.AppendBool(dst, raw[0] != 0)
}

func integerType(name string, bits int, signed bool) *datatype {
	size := bits / 8
	return &datatype{
		name: name,
		size: size,
		appendRaw: func(dst []byte, e element) ([]byte, error) {
			if e.kind != 'n' {
				return dst, fmt.Errorf("is %s, expected an integer for %s", e.describe(), name)
			}
			v, err := parseInteger(e.text, bits, signed)
			if err != nil {
				return dst, integerError(err, e, name)
			}
			return appendLittleEndian(dst, v, size), nil
		},
		appendJSON: func(dst, raw []byte) []byte {
			v := readLittleEndian(raw, size)
			if !signed {
				return strconv.AppendUint(dst, v, 10)
			}
			// Shift the sign bit of the narrow value into bit 63 and back.
			shift := 64 - bits
			return strconv.AppendInt(dst, int64(v<<shift)>>shift, 10)
		},
	}
}

// parseInteger parses a JSON integer into the two's complement bits of the
// given width.
func parseInteger(text []byte, bits int, signed bool) (uint64, error) {
	if signed {
		v, err := strconv.ParseInt(string(text), 10, bits)
		return uint64(v), err
	}
	v, err := strconv.ParseUint(string(text), 10, bits)
	if err != nil && text[0] == '-' && isInteger(text[1:]) {
		// ParseUint calls "-1" a syntax error; to a caller it is out of range.
		err = strconv.ErrRange
	}
	return v, err
}

// integerError explains why a JSON number is not an integer of the datatype.
func integerError(err error, e element, name string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("(%s) is out of range for %s", e.text, name)
	}
	return fmt.Errorf("is %s, expected an integer for %s", e.text, name)
}

// isInteger reports whether b is a JSON integer literal without a sign.
func isInteger(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func appendFP16Raw(dst []byte, e element) ([]byte, error) {
	v, err := parseFloat(e, "FP16", 64)
	if err != nil {
		return dst, err
	}
	h := float64ToHalf(v)
	if h&^halfSignBit == halfInf {
		return dst, fmt.Errorf("(%s) is out of range for FP16", e.text)
	}
	return binary.LittleEndian.AppendUint16(dst, h), nil
}

func appendFP16JSON(dst, raw []byte) []byte {
	return appendFloat(dst, float64(halfToFloat32(binary.LittleEndian.Uint16(raw))), 32)
}

func appendFP32Raw(dst []byte, e element) ([]byte, error) {
	v, err := parseFloat(e, "FP32", 32)
	if err != nil {
		return dst, err
	}
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v))), nil
}

func appendFP32JSON(dst, raw []byte) []byte {
	return appendFloat(dst, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw))), 32)
}

func appendFP64Raw(dst []byte, e element) ([]byte, error) {
	v, err := parseFloat(e, "FP64", 64)
	if err != nil {
		return dst, err
	}
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v)), nil
}

func appendFP64JSON(dst, raw []byte) []byte {
	return appendFloat(dst, math.Float64frombits(binary.LittleEndian.Uint64(raw)), 64)
}

// parseFloat parses a JSON number at the given precision. Numbers beyond the
// datatype's range are errors rather than silent infinities.
func parseFloat(e element, name string, bits int) (float64, error) {
	if e.kind != 'n' {
		return 0, fmt.Errorf("is %s, expected a number for %s", e.describe(), name)
	}
	v, err := strconv.ParseFloat(string(e.text), bits)
	if err != nil {
		// JSON numbers are valid Go floats, so only the range can be wrong.
		return 0, fmt.Errorf("(%s) is out of range for %s", e.text, name)
	}
	return v, nil
}

// appendFloat writes the shortest decimal that reads back as the same value
// at the given precision. JSON has no NaN or infinities; they are written as
// the strings protojson uses for them.
func appendFloat(dst []byte, v float64, bits int) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(dst, `"-Infinity"`...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, bits)
}

func appendBytesRaw(dst []byte, e element) ([]byte, error) {
	if e.kind != 's' {
		return dst, fmt.Errorf("is %s, expected a string for BYTES", e.describe())
	}
	s := e.text[1 : len(e.text)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		// Escapes are rare in tensors: let encoding/json decode them.
		var unescaped string
		if err := json.Unmarshal(e.text, &unescaped); err != nil {
			return dst, fmt.Errorf("is not a valid JSON string: %v", err)
		}
		s = []byte(unescaped)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...), nil
}

func appendLittleEndian(dst []byte, v uint64, size int) []byte {
	switch size {
	case 1:
		return append(dst, byte(v))
	case 2:
		return binary.LittleEndian.AppendUint16(dst, uint16(v))
	case 4:
		return binary.LittleEndian.AppendUint32(dst, uint32(v))
	default:
		return binary.LittleEndian.AppendUint64(dst, v)
	}
}

func readLittleEndian(raw []byte, size int) uint64 {
	switch size {
	case 1:
		return uint64(raw[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(raw))
	case 4:
		return uint64(binary.LittleEndian.Uint32(raw))
	default:
		return binary.LittleEndian.Uint64(raw)
	}
}
