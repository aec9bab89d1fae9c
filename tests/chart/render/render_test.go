package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSetTypesAndPathsLikeHelm(t *testing.T) {
	cases := []struct {
		expr     string
		asString bool
		want     string // JSON of the resulting values
	}{
		{"a=1", false, `{"a":1}`},
		{"a=01", false, `{"a":"01"}`},
		{"a=0", false, `{"a":0}`},
		{"a=abc", false, `{"a":"abc"}`},
		{"a=TRUE,b=false", false, `{"a":true,"b":false}`},
		{"a=1", true, `{"a":"1"}`},
		{"a.b.c=x", false, `{"a":{"b":{"c":"x"}}}`},
		{"a[1]=x", false, `{"a":[null,"x"]}`},
		{"a[0].b=x,a[0].c=y", false, `{"a":[{"b":"x","c":"y"}]}`},
		{"a[0][1]=x", false, `{"a":[[null,"x"]]}`},
		{"a={x,2}", false, `{"a":["x",2]}`},
		{"a={}", false, `{"a":null}`},
		{`a=x\,y`, false, `{"a":"x,y"}`},
		{`a\.b=x`, false, `{"a":"old","a.b":"x"}`},
		{"keep=1,a=null", false, `{"keep":1}`},
		{"a=", false, `{"a":""}`},
	}
	for _, c := range cases {
		values := map[string]interface{}{"a": "old"}
		if err := applySet(values, c.expr, c.asString); err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		got, _ := json.Marshal(values)
		if string(got) != c.want {
			t.Errorf("%q: got %s, want %s", c.expr, got, c.want)
		}
	}
}

func TestSetRejectsMalformedExpressions(t *testing.T) {
	for _, expr := range []string{"a", "=1", "a[x]=1", "a]=1", "a..b=1"} {
		if err := applySet(map[string]interface{}{}, expr, false); err == nil {
			t.Errorf("%q: no error", expr)
		}
	}
}

func TestMergeDeepMergesMapsReplacesListsAndNullDeletes(t *testing.T) {
	dst := map[string]interface{}{
		"m": map[string]interface{}{"a": 1.0, "b": 2.0},
		"l": []interface{}{1.0, 2.0},
		"d": "gone",
	}
	mergeInto(dst, map[string]interface{}{
		"m": map[string]interface{}{"b": 3.0, "c": 4.0},
		"l": []interface{}{5.0},
		"d": nil,
	})
	want := map[string]interface{}{
		"m": map[string]interface{}{"a": 1.0, "b": 3.0, "c": 4.0},
		"l": []interface{}{5.0},
	}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("got %v, want %v", dst, want)
	}
}

func compile(t *testing.T, text string) *schema {
	t.Helper()
	var doc interface{}
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	s, err := compileSchema(doc, "#")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchemaReportsEveryProblemWithItsPath(t *testing.T) {
	s := compile(t, `{
	  "type": "object", "additionalProperties": false, "required": ["n", "must"],
	  "properties": {
	    "n": {"type": "integer", "minimum": 1, "maximum": 5},
	    "must": {"type": "string"},
	    "e": {"type": "string", "enum": ["a", "b"]},
	    "p": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3},
	    "l": {"type": "array", "items": {"type": "object", "required": ["name"]}},
	    "m": {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
	  }}`)
	cases := []struct {
		values string
		want   []string
	}{
		{`{"n": 3, "must": "x", "e": "a", "p": "ab", "l": [{"name": 1}], "m": {"x": 1, "y": "z"}}`,
			nil},
		{`{"n": 3.0, "must": "x"}`, nil}, // 3.0 is an integer in JSON Schema
		{`{"n": "3", "must": "x"}`, []string{"n: Invalid type. Expected: integer, given: string"}},
		{`{"n": 2.5, "must": "x"}`, []string{"n: Invalid type. Expected: integer, given: number"}},
		{`{"n": 0, "must": "x"}`, []string{"n: Must be greater than or equal to 1"}},
		{`{"n": 9, "must": "x"}`, []string{"n: Must be less than or equal to 5"}},
		{`{"n": 1}`, []string{"(root): must is required"}},
		{`{"n": 1, "must": "x", "zz": 1}`, []string{"(root): Additional property zz is not allowed"}},
		{`{"n": 1, "must": "x", "e": "c"}`,
			[]string{`e: e must be one of the following: "a", "b"`}},
		{`{"n": 1, "must": "x", "p": "ABCD"}`, []string{
			"p: Does not match pattern '^[a-z]+$'",
			"p: String length must be less than or equal to 3"}},
		{`{"n": 1, "must": "x", "l": [{}]}`, []string{"l.0: name is required"}},
		{`{"n": 1, "must": "x", "m": {"k": true}}`,
			[]string{"m.k: Invalid type. Expected: string or number, given: boolean"}},
	}
	for _, c := range cases {
		var v interface{}
		if err := json.Unmarshal([]byte(c.values), &v); err != nil {
			t.Fatal(err)
		}
		got := s.validate(v)
		if !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%s: got %q, want %q", c.values, got, c.want)
		}
	}
}

func TestSchemaAcceptsSetIntegers(t *testing.T) {
	s := compile(t, `{"properties": {"n": {"type": "integer", "minimum": 0}}}`)
	if got := s.validate(map[string]interface{}{"n": int64(3)}); len(got) != 0 {
		t.Errorf("int64 from --set rejected: %q", got)
	}
}

func TestSchemaRejectsKeywordsItDoesNotImplement(t *testing.T) {
	var doc interface{}
	json.Unmarshal([]byte(`{"properties": {"a": {"oneOf": [{"type": "string"}]}}}`), &doc)
	_, err := compileSchema(doc, "#")
	if err == nil || !strings.Contains(err.Error(), "#/properties/a/oneOf") {
		t.Errorf("got %v, want an error naming #/properties/a/oneOf", err)
	}
}

func TestToYamlIndentsAndTrimsLikeHelm(t *testing.T) {
	got := toYAML(map[string]interface{}{
		"b": []interface{}{"x"}, "a": map[string]interface{}{"c": int64(1)},
	})
	want := "a:\n  c: 1\nb:\n- x"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestManifestsSortByInstallOrderAndSkipEmptyDocuments(t *testing.T) {
	c := &chart{
		Metadata: Metadata{Name: "c"},
		templates: []file{
			{name: "c/templates/a.yaml"}, {name: "c/templates/b.yaml"},
			{name: "c/templates/NOTES.txt"},
		},
		crds: []file{{name: "c/crds/x.yaml", data: "kind: CustomResourceDefinition\n"}},
	}
	rendered := map[string]string{
		"c/templates/a.yaml":    "kind: Deployment\n---\n\n---\nkind: Widget\n",
		"c/templates/b.yaml":    "\n---\nkind: ServiceAccount\n---\nkind: Deployment\n",
		"c/templates/NOTES.txt": "notes",
	}
	out, err := manifests(c, rendered, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "---\n# Source: c/crds/x.yaml\nkind: CustomResourceDefinition\n\n" +
		"---\n# Source: c/templates/b.yaml\nkind: ServiceAccount\n" +
		"---\n# Source: c/templates/a.yaml\nkind: Deployment\n" +
		"---\n# Source: c/templates/b.yaml\nkind: Deployment\n" +
		"---\n# Source: c/templates/a.yaml\nkind: Widget\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestManifestsReportInvalidYaml(t *testing.T) {
	c := &chart{Metadata: Metadata{Name: "c"}, templates: []file{{name: "c/templates/a.yaml"}}}
	_, err := manifests(c, map[string]string{"c/templates/a.yaml": "a: [\n"}, false)
	if err == nil || !strings.Contains(err.Error(), "YAML parse error on c/templates/a.yaml") {
		t.Errorf("got %v", err)
	}
}

func TestHelmFunctions(t *testing.T) {
	c := &chart{
		Metadata: Metadata{Name: "c", AppVersion: "1.2"},
		templates: []file{
			{name: "c/templates/_h.tpl", data: `{{ define "h" }}[{{ .x }}]{{ end }}`},
			{name: "c/templates/t.yaml", data: `{{ include "h" (dict "x" .Chart.AppVersion) }} ` +
				`{{ tpl "{{ .Release.Name }}" . }} {{ .Template.Name }} {{ .Template.BasePath }} ` +
				`{{ .Capabilities.KubeVersion.Minor }} {{ .Capabilities.APIVersions.Has "apps/v1" }} ` +
				`{{ (fromYaml "a: 1").a }} {{ toJson (list 1 "x") }} {{ .Values.missing }}|` +
				`{{ lookup "v1" "Pod" "ns" "p" | len }}`},
		},
	}
	caps, _ := newCapabilities("1.32.0", nil)
	got, err := renderTemplates(c, map[string]interface{}{}, map[string]interface{}{"Name": "r"}, caps)
	if err != nil {
		t.Fatal(err)
	}
	want := "[1.2] r c/templates/t.yaml c/templates 32 true 1 [1,\"x\"] |0"
	if got["c/templates/t.yaml"] != want {
		t.Errorf("got %q, want %q", got["c/templates/t.yaml"], want)
	}
	if _, ok := got["c/templates/_h.tpl"]; ok {
		t.Errorf("partial rendered")
	}
}

func TestRequiredFailsOnMissingOrEmpty(t *testing.T) {
	for _, values := range []map[string]interface{}{{}, {"x": ""}} {
		c := &chart{Metadata: Metadata{Name: "c"}, templates: []file{
			{name: "c/templates/t.yaml", data: `{{ required "x is required" .Values.x }}`}}}
		caps, _ := newCapabilities("1.32.0", nil)
		_, err := renderTemplates(c, values, map[string]interface{}{}, caps)
		if err == nil || !strings.Contains(err.Error(), "x is required") {
			t.Errorf("%v: got %v", values, err)
		}
	}
}

func TestArgsAcceptHelmOrder(t *testing.T) {
	o, err := parseArgs([]string{"--set", "a=1", "rel", "-n", "ns", "./chart", "-f=v.yaml",
		"--include-crds", "--set-string=b=2"})
	if err != nil {
		t.Fatal(err)
	}
	if o.releaseName != "rel" || o.chartDir != "./chart" || o.namespace != "ns" ||
		!o.includeCRDs || o.valueFiles[0] != "v.yaml" || o.sets[0] != "a=1" ||
		o.setStrings[0] != "b=2" {
		t.Errorf("got %+v", o)
	}
	if _, err := parseArgs([]string{"chart", "--bogus"}); err == nil {
		t.Errorf("unknown flag accepted")
	}
}
