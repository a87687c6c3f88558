package natssubject

import "testing"

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"oip.v2", true},
		{"tenant-a.oip.v2", true},
		{"oip", true},
		{"", false},
		{"oip.", false},
		{".oip", false},
		{"oip..v2", false},
		{"oip.*", false},
		{"oip.>", false},
		{"oip v2", false},
	}
	for _, tt := range tests {
		if err := ValidatePrefix(tt.prefix); (err == nil) != tt.ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok %v", tt.prefix, err, tt.ok)
		}
	}
}
