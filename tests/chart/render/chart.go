// Loading a chart folder: Chart.yaml, values.yaml, values.schema.json, templates/ and crds/.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"sigs.k8s.io/yaml"
)

// Metadata is Chart.yaml with the field names templates see as .Chart (Helm's chart.Metadata).
type Metadata struct {
	Name         string            `json:"name,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version,omitempty"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []*Maintainer     `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion,omitempty"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
	Type         string            `json:"type,omitempty"`
}

// Maintainer is one entry of Chart.yaml's maintainers.
type Maintainer struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

// file is one template or CRD: its name as Helm prints it ("<chart>/templates/x.yaml") and text.
type file struct {
	name string
	data string
}

type chart struct {
	Metadata  Metadata
	values    map[string]interface{}
	schema    *schema
	templates []file // sorted by name
	crds      []file // sorted by name
}

func loadChart(dir string) (*chart, error) {
	c := &chart{}
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(raw, &c.Metadata); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if err := validateMetadata(&c.Metadata); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if c.values, err = loadValuesFile(filepath.Join(dir, "values.yaml"), true); err != nil {
		return nil, err
	}
	if c.schema, err = loadSchema(filepath.Join(dir, "values.schema.json")); err != nil {
		return nil, err
	}
	if c.templates, err = readFiles(dir, "templates", c.Metadata.Name); err != nil {
		return nil, err
	}
	if c.crds, err = readFiles(dir, "crds", c.Metadata.Name); err != nil {
		return nil, err
	}
	return c, nil
}

func validateMetadata(m *Metadata) error {
	if m.APIVersion != "v2" {
		return fmt.Errorf("apiVersion %q: only v2 charts are supported", m.APIVersion)
	}
	if m.Name == "" {
		return fmt.Errorf("name is required")
	}
	if _, err := semver.StrictNewVersion(m.Version); err != nil {
		return fmt.Errorf("version %q is not a valid SemVer 2 version: %v", m.Version, err)
	}
	if len(m.Dependencies) > 0 {
		return fmt.Errorf("dependencies (subcharts) are not supported by this renderer")
	}
	if m.Type != "" && m.Type != "application" {
		return fmt.Errorf("type %q: only application charts render", m.Type)
	}
	return nil
}

// loadValuesFile reads a YAML values file into a map; a missing file is empty when optional.
func loadValuesFile(path string, optional bool) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if optional && os.IsNotExist(err) {
			return map[string]interface{}{}, nil
		}
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return values, nil
}

// readFiles returns the files under dir/sub (recursively), named "<chart>/<sub>/<rel path>".
func readFiles(dir, sub, chartName string) ([]file, error) {
	root := filepath.Join(dir, sub)
	var files []file
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files = append(files, file{name: chartName + "/" + filepath.ToSlash(rel), data: string(data)})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, err
}

// isPartial reports whether a template only defines named templates (Helm: a "_" prefix).
func isPartial(name string) bool {
	return strings.HasPrefix(filepath.Base(name), "_")
}

func isNotes(name string) bool {
	return strings.HasSuffix(name, "/NOTES.txt")
}
