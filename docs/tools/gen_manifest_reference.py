#!/usr/bin/python3
"""Writes docs/manifest-reference.md from the CRD and the hand-written notes.

The CRD (crds/parallelrun.io_parallelrunjobs.yaml) carries every field of the job-spec model with
its type, default, enum, range, pattern and description; tests/crd proves it equal to the C++
model. docs/tools/manifest_notes.py adds what a schema cannot say: the original Azure ML names,
defaults the model applies, and a few notes. tests/docs fails when the checked-in reference
differs from what this script writes.

  docs/tools/gen_manifest_reference.py            # rewrite docs/manifest-reference.md
  docs/tools/gen_manifest_reference.py --check    # exit 1 and show a diff when it is stale
"""

import argparse
import difflib
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import manifest_notes as notes  # noqa: E402

DEFAULT_CRD = os.path.join(ROOT, "crds", "parallelrun.io_parallelrunjobs.yaml")
DEFAULT_OUT = os.path.join(ROOT, "docs", "manifest-reference.md")


class NotesError(Exception):
    """The notes and the CRD disagree (a note for a field that does not exist, a field with no
    description anywhere, a top-level field in no group)."""


def load_schema(crd_path):
    """The openAPIV3Schema of the CRD's storage version, and that version's printer columns."""
    with open(crd_path, encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    for version in crd["spec"]["versions"]:
        if version.get("storage"):
            return (version["schema"]["openAPIV3Schema"],
                    version.get("additionalPrinterColumns", []), version["name"],
                    crd["spec"])
    raise NotesError(f"{crd_path}: no storage version")


def walk(schema, prefix=""):
    """Yields (path, schema, required) for every property under `schema`, depth first, in the
    CRD's order. Array items are entered as `name[]`."""
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = prefix + name
        yield path, prop, name in required
        inner = prop
        suffix = ""
        if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
            inner = prop["items"]
            suffix = "[]"
        if inner.get("properties"):
            yield from walk(inner, path + suffix + ".")


def field_paths(crd_path=DEFAULT_CRD, part="spec"):
    schema, _, _, _ = load_schema(crd_path)
    return [path for path, _, _ in walk(schema["properties"][part])]


# ---------------------------------------------------------------------------------------------
# Markdown helpers.

def escape_text(text):
    """Escapes a table cell: `|` everywhere, `<`, `>` and `*` outside code spans."""
    parts = text.split("`")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            part = part.replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")
        parts[i] = part.replace("|", r"\|")
    return "`".join(parts)


def code(value):
    if isinstance(value, bool):
        value = "true" if value else "false"
    return "`" + str(value) + "`"


def one_line(text):
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# Cells.

def type_of(prop):
    if prop.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = prop.get("type", "")
    if kind == "array":
        items = prop.get("items", {})
        inner = type_of(items)
        word, _, rest = inner.partition(" ")
        plural = word + "s" if word in ("string", "object", "integer", "boolean") else word
        return "list of " + " ".join(filter(None, [plural, rest]))
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("type") == "string":
            return "map of strings"
        if prop.get("x-kubernetes-preserve-unknown-fields"):
            return "object (kept as is)"
        return "object"
    if kind == "string" and prop.get("format") == "date-time":
        return "string (RFC 3339 time)"
    if kind == "integer" and prop.get("format"):
        return "integer (" + prop["format"] + ")"
    return kind


def default_of(prop, note):
    parts = []
    if "default" in prop:
        parts.append(code(prop["default"]))
    if note.get("model_default"):
        parts.append(note["model_default"] + " (set by the job-spec model)")
    return "; ".join(parts) if parts else "—"


def pattern_names(schema):
    """Every distinct pattern of the schema, named from the notes or numbered, in order."""
    names = {}
    counter = 0
    for _, prop, _ in walk(schema):
        pattern = prop.get("pattern")
        if pattern is None or pattern in names:
            continue
        if pattern in notes.PATTERN_NAMES:
            names[pattern] = notes.PATTERN_NAMES[pattern]
        else:
            counter += 1
            names[pattern] = f"pattern {counter}"
    return names


def anchor(name):
    return "pattern-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def rules_of(prop, required, patterns):
    rules = []
    if required:
        rules.append("required")
    if "enum" in prop:
        rules.append("one of " + ", ".join(code(v) for v in prop["enum"]))
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None and hi is not None:
        rules.append(f"{lo} to {hi}")
    elif lo is not None:
        rules.append(f"≥ {lo}")
    elif hi is not None:
        rules.append(f"≤ {hi}")
    if "minItems" in prop:
        n = prop["minItems"]
        rules.append(f"at least {n} entr{'y' if n == 1 else 'ies'}")
    if "maxItems" in prop:
        rules.append(f"at most {prop['maxItems']} entries")
    if "minLength" in prop:
        rules.append(f"at least {prop['minLength']} characters")
    if "maxLength" in prop:
        rules.append(f"at most {prop['maxLength']} characters")
    if "pattern" in prop:
        name = patterns[prop["pattern"]]
        rules.append(f"[{name}](#{anchor(name)})")
    return ", ".join(rules) if rules else "—"


def description_of(path, prop, note, part):
    text = one_line(prop.get("description", "")) or note.get("description", "")
    if not text:
        raise NotesError(f"{part}.{path} has no description: add one to the CRD or to "
                         f"docs/tools/manifest_notes.py")
    if note.get("note"):
        text += " " + note["note"]
    return escape_text(text)


def check_notes(schema):
    spec_paths = {p for p, _, _ in walk(schema["properties"]["spec"])}
    status_paths = {p for p, _, _ in walk(schema["properties"]["status"])}
    for key in notes.FIELDS:
        if key not in spec_paths:
            raise NotesError(f"manifest_notes.FIELDS names spec.{key}, which the CRD lacks")
    for key in notes.STATUS_FIELDS:
        if key not in status_paths:
            raise NotesError(
                f"manifest_notes.STATUS_FIELDS names status.{key}, which the CRD lacks")
    top = list(schema["properties"]["spec"]["properties"])
    grouped = [f for _, fields in notes.GROUPS for f in fields]
    for field in top:
        if field not in grouped:
            raise NotesError(f"spec.{field} is in no group of manifest_notes.GROUPS")
    for field in grouped:
        if field not in top:
            raise NotesError(f"manifest_notes.GROUPS names spec.{field}, which the CRD lacks")


# ---------------------------------------------------------------------------------------------
# The document.

HEADER = """\
<!-- Generated by docs/tools/gen_manifest_reference.py from {crd} and
     docs/tools/manifest_notes.py. Do not edit: change those and run the script. -->

# Manifest reference

A `ParallelRunJob` is one manifest for both local mode (`parallelrun run job.yaml`) and the
cluster (`kubectl apply -f job.yaml`). This page lists every field of the CRD
(`{crd}`), which carries the same rules as the job-spec model
that `parallelrun validate`, `parallelrun run` and the operator use. The last two columns give
the name of the same setting in Azure ML: `ParallelRunConfig` / `ParallelRunStep` (SDK v1) and
the parallel job (SDK v2, CLI v2 YAML `type: parallel`); `--name` entries were passed there as
script arguments. "—" means there is no counterpart.

Check a manifest without running it:

```sh tested
build/bin/parallelrun validate examples/score-files/job.yaml
```

On a cluster, `kubectl explain` shows the same descriptions from the installed CRD:

```sh tested cluster
kubectl explain prj.spec.inputs
```

## Envelope

| field | value |
|---|---|
| `apiVersion` | `{group}/{version}` |
| `kind` | `{kind}` (plural `{plural}`, short name `{short}`) |
| `metadata.name` | 3 to 32 characters, `^[a-z]([-a-z0-9]*[a-z0-9])?$` |
| `metadata.namespace` | any (ignored in local mode) |
| `spec` | the job: the fields below |
| `status` | written by the operator: [status](#status) |

## Spec

Nested fields are written with their parent: `inputs[].source.path` is `path` inside `source`
inside each entry of `inputs`. A *data reference* (`sourceDirectory`, `inputs[].source`,
`sideInputs[].source`, `models[].source`, `output`) is `{{volume, path}}`: a folder inside an entry of `volumes`; with
no `volume`, a path inside the image on a cluster and a path relative to the manifest's folder in
local mode.
"""

TABLE_HEAD = ("| field | type | default | rules | description | Azure ML v1 | Azure ML v2 |\n"
              "|---|---|---|---|---|---|---|\n")


def spec_section(spec, patterns):
    out = []
    props = spec["properties"]
    required_top = set(spec.get("required", []))
    rows = {}
    for path, prop, required in walk(spec):
        top = path.split(".")[0].split("[")[0]
        note = notes.FIELDS.get(path, {})
        is_required = required if "." in path else path in required_top
        rows.setdefault(top, []).append(
            "| " + " | ".join([
                code(path),
                type_of(prop),
                default_of(prop, note),
                rules_of(prop, is_required, patterns),
                description_of(path, prop, note, "spec"),
                note.get("v1", "—"),
                note.get("v2", "—"),
            ]) + " |\n")
    for title, fields in notes.GROUPS:
        out.append(f"\n### {title}\n\n")
        out.append(TABLE_HEAD)
        for field in [f for f in props if f in fields]:
            out.extend(rows[field])
    return "".join(out)


def patterns_section(patterns):
    out = ["\n### Patterns\n\n",
           "The CRD's patterns (regular expressions in the common subset of RE2 and ECMAScript). "
           "The job-spec model checks the same rules.\n"]
    for pattern, name in patterns.items():
        meaning = notes.PATTERN_MEANINGS.get(name, "")
        # GitHub's heading anchor of "Pattern: <name>" is anchor(name).
        out.append(f"\n#### Pattern: {name}\n\n" + (f"{meaning[0].upper()}{meaning[1:]}\n\n"
                                                     if meaning else ""))
        out.append("```text\n" + pattern + "\n```\n")
    return "".join(out)


def model_rules_section():
    out = ["\n### Rules only the job-spec model checks\n\n",
           "A schema cannot say these; `parallelrun validate`, `parallelrun run` and the operator "
           "check them. On a cluster a job that breaks one is accepted by the API server and then "
           "ends with phase `Failed`, condition reason `InvalidSpec`, the message and an event; "
           "no pod is created.\n\n"]
    for rule in notes.MODEL_ONLY_RULES:
        out.append(f"- {rule}\n")
    out.append("\nUnknown fields are rejected (a typo such as `nodeCont` is an error, never a "
               "silent default), and every error names its field path, the value and what was "
               "expected, all errors at once. The spec is immutable once created except "
               "`suspend`, `activeDeadlineSeconds` and `ttlSecondsAfterFinished`.\n")
    return "".join(out)


def azure_ml_section(spec):
    """Every Azure ML setting and where it goes here; each `spec.X` named must be a field."""
    paths = {p for p, _, _ in walk(spec)}
    out = ["\n## From Azure ML\n\n",
           "Where each setting of an Azure ML job goes in a manifest. Entry scripts run "
           "unchanged: see [entry scripts](entry-scripts.md) for `init()`/`run()`, "
           "`mini_batch_context` and the `azureml.core` stand-ins.\n"]
    for title, rows in (("`ParallelRunConfig` / `ParallelRunStep` (SDK v1)", notes.AZURE_ML_V1),
                        ("Parallel job (SDK v2, CLI v2 YAML `type: parallel`)",
                         notes.AZURE_ML_V2)):
        out.append(f"\n### {title}\n\n| Azure ML | here |\n|---|---|\n")
        for theirs, ours in rows:
            for ref in re.findall(r"`spec\.([A-Za-z0-9_.\[\]]+)", ours):
                if ref not in paths:
                    raise NotesError(f"manifest_notes names spec.{ref} for {theirs}, which the "
                                     f"CRD lacks")
            out.append(f"| {escape_text(theirs)} | {escape_text(ours)} |\n")
    return "".join(out)


def status_section(status, columns):
    out = ["\n## Status\n\n",
           "Written by the operator through the status subresource; the same field names as the "
           "coordinator's `GET /v1/progress`. Read it with `kubectl get prj NAME -o yaml`.\n\n",
           "| field | type | description |\n|---|---|---|\n"]
    for path, prop, _ in walk(status):
        note = notes.STATUS_FIELDS.get(path, {})
        extra = ""
        if "enum" in prop:
            extra = " One of " + ", ".join(code(v) for v in prop["enum"]) + "."
        desc = description_of(path, prop, note, "status")
        out.append(f"| {code(path)} | {type_of(prop)} | {desc}{extra} |\n")
    out.append("\n### Columns of `kubectl get prj`\n\n"
               "| column | JSONPath | type | description |\n|---|---|---|---|\n")
    for col in columns:
        desc = escape_text(one_line(col.get("description", "Time since the job was created.")))
        out.append(f"| {col['name']} | {code(col['jsonPath'])} | {col['type']} | {desc} |\n")
    return "".join(out)


def generate(crd_path=DEFAULT_CRD):
    schema, columns, version, crd_spec = load_schema(crd_path)
    check_notes(schema)
    spec = schema["properties"]["spec"]
    patterns = pattern_names(spec)
    crd_rel = os.path.relpath(os.path.abspath(crd_path), ROOT)
    names = crd_spec["names"]
    text = HEADER.format(crd=crd_rel, group=crd_spec["group"], version=version,
                         kind=names["kind"], plural=names["plural"],
                         short=", ".join(names.get("shortNames", [])))
    text += spec_section(spec, patterns)
    text += patterns_section(patterns)
    text += model_rules_section()
    text += azure_ml_section(spec)
    text += status_section(schema["properties"]["status"], columns)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", default=DEFAULT_CRD)
    parser.add_argument("-o", "--output", default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true",
                        help="compare with the output file instead of writing it")
    args = parser.parse_args()
    try:
        text = generate(args.crd)
    except NotesError as e:
        print(f"gen_manifest_reference: {e}", file=sys.stderr)
        return 1
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(True), text.splitlines(True), args.output, "generated"))
        print(f"{args.output} is stale: run docs/tools/gen_manifest_reference.py",
              file=sys.stderr)
        return 1
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
