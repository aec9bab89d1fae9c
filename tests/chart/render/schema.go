// A JSON Schema draft-07 validator for values.schema.json, limited to the keywords charts use for
// values: type, properties, required, additionalProperties, items, enum, minimum, maximum,
// minLength, maxLength, pattern (plus the annotations $schema, $id, $comment, title,
// description, default, examples). A schema using any other keyword is rejected when loaded,
// so nothing in it is silently ignored. Messages follow gojsonschema, which Helm uses:
// "<field path>: Invalid type. Expected: integer, given: string".
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
)

type schema struct {
	types                []string
	properties           map[string]*schema
	required             []string
	additionalProperties *schema // nil: any; see additionalAllowed
	additionalAllowed    bool
	items                *schema
	enum                 []interface{}
	minimum, maximum     *float64
	minLength, maxLength *int
	pattern              *regexp.Regexp
}

var annotationKeywords = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true,
	"default": true, "examples": true,
}

var knownTypes = map[string]bool{
	"object": true, "array": true, "string": true, "integer": true, "number": true,
	"boolean": true, "null": true,
}

// loadSchema reads path; a missing file means the chart has no schema (nil, no error).
func loadSchema(path string) (*schema, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc interface{}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	s, err := compileSchema(doc, "#")
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return s, nil
}

func compileSchema(doc interface{}, at string) (*schema, error) {
	obj, ok := doc.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: a schema must be an object", at)
	}
	s := &schema{additionalAllowed: true}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := s.compileKeyword(k, obj[k], at); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *schema) compileKeyword(k string, v interface{}, at string) error {
	bad := func(what string) error { return fmt.Errorf("%s/%s: %s", at, k, what) }
	switch k {
	case "type":
		switch t := v.(type) {
		case string:
			s.types = []string{t}
		case []interface{}:
			for _, x := range t {
				name, ok := x.(string)
				if !ok {
					return bad("must be a string or a list of strings")
				}
				s.types = append(s.types, name)
			}
		default:
			return bad("must be a string or a list of strings")
		}
		for _, t := range s.types {
			if !knownTypes[t] {
				return bad(fmt.Sprintf("unknown type %q", t))
			}
		}
	case "properties":
		props, ok := v.(map[string]interface{})
		if !ok {
			return bad("must be an object")
		}
		s.properties = map[string]*schema{}
		for name, sub := range props {
			c, err := compileSchema(sub, at+"/properties/"+name)
			if err != nil {
				return err
			}
			s.properties[name] = c
		}
	case "required":
		list, ok := v.([]interface{})
		if !ok {
			return bad("must be a list of strings")
		}
		for _, x := range list {
			name, ok := x.(string)
			if !ok {
				return bad("must be a list of strings")
			}
			s.required = append(s.required, name)
		}
	case "additionalProperties":
		switch t := v.(type) {
		case bool:
			s.additionalAllowed = t
		default:
			c, err := compileSchema(t, at+"/additionalProperties")
			if err != nil {
				return err
			}
			s.additionalProperties = c
		}
	case "items":
		c, err := compileSchema(v, at+"/items")
		if err != nil {
			return err
		}
		s.items = c
	case "enum":
		list, ok := v.([]interface{})
		if !ok || len(list) == 0 {
			return bad("must be a non-empty list")
		}
		s.enum = list
	case "minimum", "maximum":
		n, ok := v.(float64)
		if !ok {
			return bad("must be a number")
		}
		if k == "minimum" {
			s.minimum = &n
		} else {
			s.maximum = &n
		}
	case "minLength", "maxLength":
		n, ok := v.(float64)
		if !ok || n < 0 || n != math.Trunc(n) {
			return bad("must be a non-negative integer")
		}
		i := int(n)
		if k == "minLength" {
			s.minLength = &i
		} else {
			s.maxLength = &i
		}
	case "pattern":
		p, ok := v.(string)
		if !ok {
			return bad("must be a string")
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return bad(err.Error())
		}
		s.pattern = re
	default:
		if !annotationKeywords[k] {
			return bad("keyword not supported by this validator")
		}
	}
	return nil
}

// validate returns one message per problem, sorted, empty when v conforms.
func (s *schema) validate(v interface{}) []string {
	var problems []string
	s.check(v, "(root)", &problems)
	sort.Strings(problems)
	return problems
}

func child(path, name string) string {
	if path == "(root)" {
		return name
	}
	return path + "." + name
}

func (s *schema) check(v interface{}, path string, problems *[]string) {
	add := func(format string, args ...interface{}) {
		*problems = append(*problems, path+": "+fmt.Sprintf(format, args...))
	}
	if len(s.types) > 0 && !s.typeMatches(v) {
		add("Invalid type. Expected: %s, given: %s", strings.Join(s.types, " or "), jsonType(v))
		return
	}
	if len(s.enum) > 0 && !inEnum(v, s.enum) {
		var quoted []string
		for _, e := range s.enum {
			b, _ := json.Marshal(e)
			quoted = append(quoted, string(b))
		}
		add("%s must be one of the following: %s", lastSegment(path), strings.Join(quoted, ", "))
	}
	if n, ok := number(v); ok {
		if s.minimum != nil && n < *s.minimum {
			add("Must be greater than or equal to %v", *s.minimum)
		}
		if s.maximum != nil && n > *s.maximum {
			add("Must be less than or equal to %v", *s.maximum)
		}
	}
	if str, ok := v.(string); ok {
		length := len([]rune(str))
		if s.minLength != nil && length < *s.minLength {
			add("String length must be greater than or equal to %d", *s.minLength)
		}
		if s.maxLength != nil && length > *s.maxLength {
			add("String length must be less than or equal to %d", *s.maxLength)
		}
		if s.pattern != nil && !s.pattern.MatchString(str) {
			add("Does not match pattern '%s'", s.pattern.String())
		}
	}
	switch t := v.(type) {
	case map[string]interface{}:
		s.checkObject(t, path, problems)
	case []interface{}:
		if s.items != nil {
			for i, x := range t {
				s.items.check(x, child(path, fmt.Sprint(i)), problems)
			}
		}
	}
}

func (s *schema) checkObject(obj map[string]interface{}, path string, problems *[]string) {
	for _, name := range s.required {
		if _, ok := obj[name]; !ok {
			*problems = append(*problems, fmt.Sprintf("%s: %s is required", path, name))
		}
	}
	for name, x := range obj {
		if sub, ok := s.properties[name]; ok {
			sub.check(x, child(path, name), problems)
		} else if s.additionalProperties != nil {
			s.additionalProperties.check(x, child(path, name), problems)
		} else if !s.additionalAllowed {
			*problems = append(*problems,
				fmt.Sprintf("%s: Additional property %s is not allowed", path, name))
		}
	}
}

func (s *schema) typeMatches(v interface{}) bool {
	actual := jsonType(v)
	for _, t := range s.types {
		if t == actual || (t == "number" && actual == "integer") {
			return true
		}
	}
	return false
}

// jsonType names v's JSON type; a number without a fraction is an integer (as in draft-07).
func jsonType(v interface{}) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []interface{}:
		return "array"
	case map[string]interface{}:
		return "object"
	}
	if n, ok := number(v); ok {
		if n == math.Trunc(n) && !math.IsInf(n, 0) {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func number(v interface{}) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	}
	return 0, false
}

func inEnum(v interface{}, enum []interface{}) bool {
	for _, e := range enum {
		if en, ok := number(e); ok {
			if vn, ok := number(v); ok && vn == en {
				return true
			}
			continue
		}
		if fmt.Sprintf("%T:%v", e, e) == fmt.Sprintf("%T:%v", v, v) {
			return true
		}
	}
	return false
}

func lastSegment(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}
