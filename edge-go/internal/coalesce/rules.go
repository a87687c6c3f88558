package coalesce

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Rule says how the infer requests of one model are coalesced.
type Rule struct {
	// Coalesce turns merging on for the model.
	Coalesce bool `toml:"coalesce"`
	// MaxRows bounds the rows (the batch dimension) of one merged call; keep
	// it at most the model's max_batch_size. A request with more rows than
	// this is sent alone.
	MaxRows int `toml:"max_rows"`
	// MaxInFlight is how many calls per key go out at once before arrivals
	// queue to be merged into the next one.
	MaxInFlight int `toml:"max_in_flight"`
	// MaxQueueRows bounds the rows queued per key: beyond it a request is
	// refused at once (429) rather than queued behind work that would not
	// be served in time. Default: QueueRowsPerMaxRows x MaxRows.
	MaxQueueRows int `toml:"max_queue_rows"`
}

// The defaults of a rule that leaves them out.
const (
	DefaultMaxRows = 128
	// One call in flight per key: measured best on one shared core and on all
	// cores (routing.toml has the figures).
	DefaultMaxInFlight = 1
	// QueueRowsPerMaxRows sizes the default queue: eight merged calls' worth.
	QueueRowsPerMaxRows = 8
)

// routingFile is the TOML routing file: a table per model.
type routingFile struct {
	Models map[string]Rule `toml:"models"`
}

// LoadRules reads a routing file (TOML; see edge-go/routing.toml) and
// returns the rule of every model it names.
func LoadRules(path string) (map[string]Rule, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read routing file: %w", err)
	}
	rules, err := ParseRules(string(text))
	if err != nil {
		return nil, fmt.Errorf("routing file %s: %w", path, err)
	}
	return rules, nil
}

// ParseRules parses the text of a routing file. Keys it does not know are
// errors, so that a misspelt setting is not silently ignored.
func ParseRules(text string) (map[string]Rule, error) {
	var f routingFile
	md, err := toml.Decode(text, &f)
	if err != nil {
		return nil, err
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	var errs []error
	for name, rule := range f.Models {
		defined := func(key string) bool { return md.IsDefined("models", name, key) }
		if !defined("max_rows") {
			rule.MaxRows = DefaultMaxRows
		}
		if !defined("max_in_flight") {
			rule.MaxInFlight = DefaultMaxInFlight
		}
		if !defined("max_queue_rows") {
			rule.MaxQueueRows = QueueRowsPerMaxRows * rule.MaxRows
		}
		if rule.MaxQueueRows < 1 {
			errs = append(errs, fmt.Errorf("models.%s.max_queue_rows = %d: must be at least 1", name, rule.MaxQueueRows))
		}
		if rule.MaxRows < 1 {
			errs = append(errs, fmt.Errorf("models.%s.max_rows = %d: must be at least 1", name, rule.MaxRows))
		}
		if rule.MaxInFlight < 1 {
			errs = append(errs, fmt.Errorf("models.%s.max_in_flight = %d: must be at least 1", name, rule.MaxInFlight))
		}
		f.Models[name] = rule
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f.Models, nil
}
