// chart-render renders a Helm chart the way `helm template` does, for tests on machines where no
// helm binary can be installed. It is built from Debian's Go packages only (text/template, sprig,
// sigs.k8s.io/yaml; see tests/chart/CMakeLists.txt).
//
//	chart-render [NAME] CHART [-n NAMESPACE] [-f values.yaml]... [--set k=v]...
//	             [--set-string k=v]... [--include-crds] [--kube-version 1.32.0]
//	             [--api-versions group/version]... [--notes]
//
// Guarantees (what tests may rely on, matching helm template):
//   - values: the chart's values.yaml, then each -f file merged over it (maps deep-merged, a null
//     deletes the key), then each --set / --set-string in order; the result is validated against
//     values.schema.json before any template runs (exit 1, Helm's message format).
//   - templates see .Values, .Release {Name, Namespace, Service "Helm", IsInstall, IsUpgrade,
//     Revision}, .Chart (Chart.yaml, Helm's capitalized fields), .Capabilities (KubeVersion,
//     APIVersions.Has), .Template {Name, BasePath}; functions: sprig's TxtFuncMap without env and
//     expandenv, plus include, tpl, required, toYaml, fromYaml, fromYamlArray, toJson, fromJson,
//     fromJsonArray and lookup (always empty, as in helm template).
//   - output: "---\n# Source: <chart>/<path>\n<document>\n" for every non-empty document, CRD
//     files first (with --include-crds), then template documents in Helm's install order by
//     kind (stable: file name, then position). Files whose names start with "_" and NOTES.txt
//     are not output; --notes prints the rendered NOTES.txt instead.
//
// Caveats: no subcharts (a chart with dependencies is rejected), no .Files, no toToml;
// .Capabilities.APIVersions holds group/versions (Kubernetes 1.32's built-in groups and each
// --api-versions), not group/version/Kind entries; documents split at lines that are only "---".
package main

import (
	"fmt"
	"os"
	"strings"
)

type options struct {
	releaseName string
	chartDir    string
	namespace   string
	valueFiles  []string
	sets        []string
	setStrings  []string
	includeCRDs bool
	kubeVersion string
	apiVersions []string
	notes       bool
}

const usage = `usage: chart-render [NAME] CHART [-n NAMESPACE] [-f FILE]... [--set K=V]...
       [--set-string K=V]... [--include-crds] [--kube-version V] [--api-versions G/V]... [--notes]`

// parseArgs accepts flags and positional arguments in any order, as helm does.
func parseArgs(args []string) (options, error) {
	o := options{releaseName: "release-name", namespace: "default", kubeVersion: "1.32.0"}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(a, "=")
		needValue := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch name {
		case "-n", "--namespace":
			v, err = needValue()
			o.namespace = v
		case "-f", "--values":
			v, err = needValue()
			o.valueFiles = append(o.valueFiles, v)
		case "--set":
			v, err = needValue()
			o.sets = append(o.sets, v)
		case "--set-string":
			v, err = needValue()
			o.setStrings = append(o.setStrings, v)
		case "--kube-version":
			v, err = needValue()
			o.kubeVersion = strings.TrimPrefix(v, "v")
		case "-a", "--api-versions":
			v, err = needValue()
			o.apiVersions = append(o.apiVersions, v)
		case "--include-crds":
			o.includeCRDs = true
		case "--notes":
			o.notes = true
		case "-h", "--help":
			return o, fmt.Errorf("%s", usage)
		default:
			return o, fmt.Errorf("unknown flag %s\n%s", name, usage)
		}
		if err != nil {
			return o, err
		}
	}
	switch len(positional) {
	case 1:
		o.chartDir = positional[0]
	case 2:
		o.releaseName, o.chartDir = positional[0], positional[1]
	default:
		return o, fmt.Errorf("expected [NAME] CHART\n%s", usage)
	}
	return o, nil
}

func run(args []string) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	chart, err := loadChart(o.chartDir)
	if err != nil {
		return err
	}
	values, err := buildValues(chart, o)
	if err != nil {
		return err
	}
	if chart.schema != nil {
		if problems := chart.schema.validate(values); len(problems) > 0 {
			return fmt.Errorf("values don't meet the specifications of the schema(s) in the "+
				"following chart(s):\n%s:\n- %s", chart.Metadata.Name, strings.Join(problems, "\n- "))
		}
	}
	caps, err := newCapabilities(o.kubeVersion, o.apiVersions)
	if err != nil {
		return err
	}
	if err := checkKubeVersion(chart, caps); err != nil {
		return err
	}
	rendered, err := renderTemplates(chart, values, release(o), caps)
	if err != nil {
		return err
	}
	if o.notes {
		fmt.Print(rendered[chart.Metadata.Name+"/templates/NOTES.txt"])
		return nil
	}
	out, err := manifests(chart, rendered, o.includeCRDs)
	if err != nil {
		return err
	}
	_, err = os.Stdout.WriteString(out)
	return err
}

func release(o options) map[string]interface{} {
	return map[string]interface{}{
		"Name":      o.releaseName,
		"Namespace": o.namespace,
		"Service":   "Helm",
		"IsInstall": true,
		"IsUpgrade": false,
		"Revision":  1,
	}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+err.Error())
		os.Exit(1)
	}
}
