package rest

import (
	"net/http"
	"strconv"
)

// writeBinary writes an infer response in the binary tensor extension's
// form: the JSON header, then the binary outputs' bytes, in order, each
// written from the response as it is.
func writeBinary(w http.ResponseWriter, header []byte, blobs [][]byte) {
	n := len(header)
	for _, b := range blobs {
		n += len(b)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(headerBinaryLength, strconv.Itoa(len(header)))
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	// A failed write means the client left; nothing to tell it.
	if _, err := w.Write(header); err != nil {
		return
	}
	for _, b := range blobs {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}
