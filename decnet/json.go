package decnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxRequestBytes is the largest request body a decnet server accepts.
const MaxRequestBytes = 1 << 20

// DecodeStrict decodes exactly one JSON value from data into v, rejecting
// unknown fields, malformed JSON and trailing data. Every failure wraps
// ErrInvalid. Use it for requests; responses are decoded leniently so a newer
// peer does not break an older one.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return Errorf(ErrInvalid, "body", "", "request body is empty")
		}
		return Errorf(ErrInvalid, "body", "", "malformed request body: %v", err)
	}
	if dec.More() {
		return Errorf(ErrInvalid, "body", "", "request body holds more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(ErrInvalid, "body", "", "trailing data after the JSON value")
	}
	return nil
}

// DecodeLenient decodes a response body, ignoring unknown fields.
func DecodeLenient(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
