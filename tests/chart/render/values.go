// Values: the chart's defaults, -f files and --set expressions, combined as Helm does.
package main

import (
	"fmt"
	"strconv"
	"strings"
)

// buildValues merges the chart's values.yaml, then each -f file, then each --set and
// --set-string (in that order, as Helm applies them).
func buildValues(c *chart, o options) (map[string]interface{}, error) {
	values := deepCopy(c.values).(map[string]interface{})
	for _, path := range o.valueFiles {
		overlay, err := loadValuesFile(path, false)
		if err != nil {
			return nil, err
		}
		mergeInto(values, overlay)
	}
	for _, expr := range o.sets {
		if err := applySet(values, expr, false); err != nil {
			return nil, fmt.Errorf("failed parsing --set data: %v", err)
		}
	}
	for _, expr := range o.setStrings {
		if err := applySet(values, expr, true); err != nil {
			return nil, fmt.Errorf("failed parsing --set-string data: %v", err)
		}
	}
	return values, nil
}

// mergeInto merges overlay over dst: maps merge key by key, anything else replaces, and a null
// deletes the key (Helm's way to drop a default).
func mergeInto(dst, overlay map[string]interface{}) {
	for k, v := range overlay {
		if v == nil {
			delete(dst, k)
			continue
		}
		if vm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dm, vm)
				continue
			}
		}
		dst[k] = deepCopy(v)
	}
}

func deepCopy(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, x := range t {
			m[k] = deepCopy(x)
		}
		return m
	case []interface{}:
		l := make([]interface{}, len(t))
		for i, x := range t {
			l[i] = deepCopy(x)
		}
		return l
	default:
		return v
	}
}

// applySet applies one --set expression: comma-separated `path=value` assignments where path is
// dot-separated keys with optional [index] suffixes (a.b[0].c), `\` escapes the next character,
// and a value `{x,y}` is a list. Values are typed as Helm types them unless asString: true/false
// (any case), null (deletes the key), integers without a leading zero; everything else is a
// string.
func applySet(values map[string]interface{}, expr string, asString bool) error {
	for _, assignment := range splitUnescaped(expr, ',', true) {
		eq := indexUnescaped(assignment, '=')
		if eq < 0 {
			return fmt.Errorf("key %q has no value", unescape(assignment))
		}
		path, err := parsePath(assignment[:eq])
		if err != nil {
			return err
		}
		raw := assignment[eq+1:]
		var value interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			var list []interface{}
			inner := raw[1 : len(raw)-1]
			if inner != "" {
				for _, item := range splitUnescaped(inner, ',', false) {
					list = append(list, typedValue(unescape(item), asString))
				}
			}
			value = list
		} else {
			value = typedValue(unescape(raw), asString)
		}
		if err := setPath(values, path, value); err != nil {
			return err
		}
	}
	return nil
}

// splitUnescaped splits s at sep characters not escaped by `\`; with braces, not inside {...}.
func splitUnescaped(s string, sep byte, braces bool) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case braces && s[i] == '{':
			depth++
		case braces && s[i] == '}' && depth > 0:
			depth--
		case s[i] == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func indexUnescaped(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if s[i] == c {
			return i
		}
	}
	return -1
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func typedValue(s string, asString bool) interface{} {
	if asString {
		return s
	}
	switch {
	case strings.EqualFold(s, "true"):
		return true
	case strings.EqualFold(s, "false"):
		return false
	case strings.EqualFold(s, "null"):
		return nil
	case s == "0":
		return int64(0)
	}
	if s != "" && s[0] != '0' {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

// pathStep is a map key, optionally followed by list indexes (key[1][2]).
type pathStep struct {
	key     string
	indexes []int
}

func parsePath(s string) ([]pathStep, error) {
	if s == "" {
		return nil, fmt.Errorf("empty key")
	}
	var steps []pathStep
	for _, part := range splitUnescaped(s, '.', false) {
		step := pathStep{}
		key := part
		for strings.HasSuffix(key, "]") {
			open := strings.LastIndex(key, "[")
			if open < 0 {
				return nil, fmt.Errorf("key %q: unbalanced ]", s)
			}
			n, err := strconv.Atoi(key[open+1 : len(key)-1])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("key %q: bad list index %q", s, key[open+1:len(key)-1])
			}
			step.indexes = append([]int{n}, step.indexes...)
			key = key[:open]
		}
		step.key = unescape(key)
		if step.key == "" {
			return nil, fmt.Errorf("key %q: empty key segment", s)
		}
		steps = append(steps, step)
	}
	return steps, nil
}

// setPath stores value at path, creating maps and growing lists on the way; a nil value deletes
// a map key.
func setPath(values map[string]interface{}, path []pathStep, value interface{}) error {
	m := values
	for i, step := range path {
		last := i == len(path)-1
		if len(step.indexes) == 0 {
			if last {
				if value == nil {
					delete(m, step.key)
				} else {
					m[step.key] = value
				}
				return nil
			}
			next, ok := m[step.key].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[step.key] = next
			}
			m = next
			continue
		}
		// key[i][j]...: walk the lists, growing them with nils.
		var container interface{} = m[step.key]
		set := func(v interface{}) { m[step.key] = v }
		for j, idx := range step.indexes {
			list, _ := container.([]interface{})
			for len(list) <= idx {
				list = append(list, nil)
			}
			set(list)
			innermost := j == len(step.indexes)-1
			if innermost && last {
				list[idx] = value
				return nil
			}
			if innermost {
				next, ok := list[idx].(map[string]interface{})
				if !ok {
					next = map[string]interface{}{}
					list[idx] = next
				}
				m = next
				break
			}
			container = list[idx]
			l, at := list, idx
			set = func(v interface{}) { l[at] = v }
		}
	}
	return nil
}
