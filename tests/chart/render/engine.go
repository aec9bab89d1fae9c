// The template engine: Helm's built-in objects and functions over text/template + sprig, and the
// manifest output of `helm template`.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver/v3"
	sprig "github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version string // v1.32.0
	Major   string
	Minor   string
}

func (k KubeVersion) String() string     { return k.Version }
func (k KubeVersion) GitVersion() string { return k.Version }

// VersionSet is .Capabilities.APIVersions: "group/version" and "group/version/Kind" entries.
type VersionSet []string

// Has reports whether the cluster serves apiVersion ("apps/v1" or "apps/v1/Deployment").
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// HelmVersion is .Capabilities.HelmVersion: the Helm release whose template semantics we follow.
type HelmVersion struct {
	Version   string
	GoVersion string
}

// Capabilities is .Capabilities.
type Capabilities struct {
	APIVersions VersionSet
	KubeVersion KubeVersion
	HelmVersion HelmVersion
}

// builtinAPIVersions: the groups a Kubernetes 1.32 API server serves by default.
var builtinAPIVersions = []string{
	"v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1",
	"apiregistration.k8s.io/v1", "apps/v1", "authentication.k8s.io/v1",
	"authorization.k8s.io/v1", "autoscaling/v1", "autoscaling/v2", "batch/v1",
	"certificates.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
	"events.k8s.io/v1", "flowcontrol.apiserver.k8s.io/v1", "networking.k8s.io/v1",
	"node.k8s.io/v1", "policy/v1", "rbac.authorization.k8s.io/v1", "scheduling.k8s.io/v1",
	"storage.k8s.io/v1",
}

func newCapabilities(kubeVersion string, extra []string) (*Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("--kube-version %q: %v", kubeVersion, err)
	}
	return &Capabilities{
		APIVersions: append(append(VersionSet{}, builtinAPIVersions...), extra...),
		KubeVersion: KubeVersion{
			Version: "v" + v.String(),
			Major:   fmt.Sprint(v.Major()),
			Minor:   fmt.Sprint(v.Minor()),
		},
		HelmVersion: HelmVersion{Version: "v3.16.0", GoVersion: runtime.Version()},
	}, nil
}

// checkKubeVersion fails as Helm does when Chart.yaml's kubeVersion excludes the cluster's.
func checkKubeVersion(c *chart, caps *Capabilities) error {
	if c.Metadata.KubeVersion == "" {
		return nil
	}
	constraint, err := semver.NewConstraint(c.Metadata.KubeVersion)
	if err != nil {
		return fmt.Errorf("Chart.yaml kubeVersion %q: %v", c.Metadata.KubeVersion, err)
	}
	v, _ := semver.NewVersion(caps.KubeVersion.Version)
	if !constraint.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
			c.Metadata.KubeVersion, caps.KubeVersion.Version)
	}
	return nil
}

const maxIncludeDepth = 1000

// funcMap returns sprig's functions plus Helm's own; include and tpl act on *t.
func funcMap(t **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env") // Helm removes these: a chart must not read the renderer's environment.
	delete(f, "expandenv")
	depth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if depth[name] >= maxIncludeDepth {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var buf strings.Builder
		err := (*t).ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := (*t).Clone()
		if err != nil {
			return "", err
		}
		parsed, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := parsed.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(message string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, fmt.Errorf("%s", message)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, fmt.Errorf("%s", message)
		}
		return v, nil
	}
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["fromYamlArray"] = fromYAMLArray
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["fromJsonArray"] = fromJSONArray
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // helm template talks to no cluster
	}
	return f
}

// toYAML is Helm's: sigs.k8s.io/yaml (JSON field names, sorted keys, 2-space indent), without
// the final newline, "" on error.
func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var a []interface{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	var a []interface{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

// renderTemplates executes every template except partials; the result maps template name to
// text (NOTES.txt included, so its errors surface too).
func renderTemplates(c *chart, values map[string]interface{}, release map[string]interface{},
	caps *Capabilities) (map[string]string, error) {
	var t *template.Template
	t = template.New("gotpl").Option("missingkey=zero").Funcs(funcMap(&t))
	for _, f := range c.templates {
		if _, err := t.New(f.name).Parse(f.data); err != nil {
			return nil, err
		}
	}
	rendered := map[string]string{}
	basePath := c.Metadata.Name + "/templates"
	for _, f := range c.templates {
		if isPartial(f.name) {
			continue
		}
		top := map[string]interface{}{
			"Values":       values,
			"Release":      release,
			"Chart":        &c.Metadata,
			"Capabilities": caps,
			"Template":     map[string]interface{}{"Name": f.name, "BasePath": basePath},
			"Files":        map[string]interface{}{},
			"Subcharts":    map[string]interface{}{},
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, f.name, top); err != nil {
			return nil, err
		}
		rendered[f.name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return rendered, nil
}

// installOrder is Helm's InstallOrder: the kinds helm install creates first.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

// docSeparator: a line that is only "---" (Helm's own pattern leaves a "---" behind when two
// separators enclose an empty document).
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

type manifest struct {
	source  string
	content string
	kind    string
}

// manifests formats the output of helm template: CRDs (when includeCRDs) as their files are,
// then the rendered documents sorted by install order.
func manifests(c *chart, rendered map[string]string, includeCRDs bool) (string, error) {
	var out strings.Builder
	if includeCRDs {
		for _, f := range c.crds {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", f.name, f.data)
		}
	}
	var docs []manifest
	for _, f := range c.templates { // sorted by name
		text, ok := rendered[f.name]
		if !ok || isNotes(f.name) {
			continue
		}
		for _, doc := range docSeparator.Split(text, -1) {
			doc = strings.TrimSpace(doc)
			if doc == "" {
				continue
			}
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return "", fmt.Errorf("YAML parse error on %s: %v", f.name, err)
			}
			docs = append(docs, manifest{source: f.name, content: doc, kind: head.Kind})
		}
	}
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	sort.SliceStable(docs, func(i, j int) bool {
		ri, iKnown := rank[docs[i].kind]
		rj, jKnown := rank[docs[j].kind]
		switch {
		case iKnown && jKnown:
			return ri < rj
		case iKnown != jKnown:
			return iKnown
		default:
			return docs[i].kind < docs[j].kind
		}
	})
	for _, d := range docs {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", d.source, d.content)
	}
	return out.String(), nil
}
