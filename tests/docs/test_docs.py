"""The documentation cannot rot.

ManifestReferenceTest: docs/manifest-reference.md is what docs/tools/gen_manifest_reference.py
writes from the CRD, and it names every field of the CRD's spec and status (walked here on their
own, not with the generator's walker) and every field the C++ job-spec model knows (read from
`parallelrun validate`'s "unknown field ..., expected one of ..." errors).

DocBlocksTest: every fenced block marked `tested` in docs/*.md and README.md runs, in order, with
`bash -euo pipefail` from a sandbox that looks like the repository root (symlinks to it, a fresh
copy of examples/, build/ pointing at the build folder under test, build/bin on PATH, HOME in the
sandbox). Blocks marked `tested cluster` also get KUBECONFIG of a fresh local test cluster
(tests/cluster) with the ParallelRunJob CRD installed and no operator, one per document. Blocks
marked `tested on-failed-job` are left to tests/operator/test_why_failed_e2e.py, which runs them
against a failed job.

DocManifestsTest: every ```yaml block holding a ParallelRunJob passes `parallelrun validate`
(and must fail it when marked `invalid`). DocLinksTest: relative links name existing files and
headings.

docs/README.md states these conventions for authors.

Environment (set by CTest): PARALLELRUN_BIN; TESTCLUSTER_BIN for documents with cluster blocks.
"""

import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRD = os.path.join(ROOT, "crds", "parallelrun.io_parallelrunjobs.yaml")
REFERENCE = os.path.join(ROOT, "docs", "manifest-reference.md")
BIN = os.path.abspath(os.environ["PARALLELRUN_BIN"])
BUILD = os.path.dirname(os.path.dirname(BIN))
BLOCK_TIMEOUT_S = 300

sys.path.insert(0, os.path.join(ROOT, "docs", "tools"))
import gen_manifest_reference  # noqa: E402


def documents():
    """docs/**/*.md and README.md, repository-relative, sorted."""
    paths = glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    paths.append(os.path.join(ROOT, "README.md"))
    return sorted(os.path.relpath(p, ROOT) for p in paths)


class Block:
    def __init__(self, doc, line, info, body):
        self.doc = doc
        self.line = line  # 1-based line of the opening fence
        words = info.split()
        self.lang = words[0] if words else ""
        self.flags = set(words[1:])
        self.body = body

    @property
    def where(self):
        return f"{self.doc}:{self.line}"


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def blocks_of(doc):
    """The fenced code blocks of a markdown file (indented fences included, e.g. in lists)."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        body = []
        j = i + 1
        while j < len(lines):
            close = FENCE.match(lines[j])
            if close and close.group(2).startswith(fence[0] * len(fence)) and \
                    not close.group(3).strip():
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append(Block(doc, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return out


# ---------------------------------------------------------------------------------------------
# The manifest reference.

def schema_paths(schema, prefix=""):
    """Every property path under an OpenAPI object schema; array items as `name[]`."""
    paths = []
    for name, prop in (schema.get("properties") or {}).items():
        path = prefix + name
        paths.append(path)
        target, suffix = prop, ""
        if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
            target, suffix = prop["items"], "[]"
        paths.extend(schema_paths(target, path + suffix + "."))
    return paths


def reference_fields(section):
    """The first-column code spans of the tables under the `## <section>` heading."""
    with open(REFERENCE, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## " + re.escape(section) + r"\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        raise AssertionError(f"docs/manifest-reference.md has no '## {section}' section")
    return set(re.findall(r"^\| `([^`]+)` \|", m.group(1), re.M))


# Unknown keys at every object level of the model; the errors list the known ones.
PROBE = """\
apiVersion: parallelrun.io/v1alpha1
kind: ParallelRunJob
metadata: {name: probe}
spec:
  zzProbe: 1
  entryScript: score.py
  sourceDirectory: {path: code, zzProbe: 1}
  inputs:
  - {name: a, source: {path: in, zzProbe: 1}, zzProbe: 1}
  sideInputs:
  - {name: b, source: {path: side, zzProbe: 1}, zzProbe: 1}
  output: {path: out, zzProbe: 1}
"""
PROBE_ERROR = re.compile(r"^\s*-\s*spec\.(\S*?)\.?zzProbe: unknown field.*?expected one of (.*)$",
                         re.M)


def model_fields(tmp):
    """Field paths of the C++ model, from `parallelrun validate` on PROBE."""
    path = os.path.join(tmp, "probe.yaml")
    with open(path, "w") as f:
        f.write(PROBE)
    proc = subprocess.run([BIN, "validate", path], capture_output=True, text=True, timeout=60)
    if proc.returncode != 1:
        raise AssertionError(f"validate of the probe exited {proc.returncode}: {proc.stderr}")
    levels = {}
    for parent, known in PROBE_ERROR.findall(proc.stderr):
        parent = re.sub(r"\[\d+\]", "[]", parent)
        levels[parent] = [k.strip() for k in known.split(",")]
    return levels, proc.stderr


class ManifestReferenceTest(unittest.TestCase):
    def test_checked_in_reference_is_what_the_generator_writes(self):
        generated = gen_manifest_reference.generate(CRD)
        with open(REFERENCE, encoding="utf-8") as f:
            current = f.read()
        if generated != current:
            diff = "".join(difflib.unified_diff(current.splitlines(True),
                                                generated.splitlines(True),
                                                "docs/manifest-reference.md", "generated", n=1))
            self.fail("docs/manifest-reference.md is stale; run "
                      "docs/tools/gen_manifest_reference.py\n" + diff[:6000])

    def test_every_crd_spec_field_is_in_the_reference(self):
        with open(CRD, encoding="utf-8") as f:
            crd = yaml.safe_load(f)
        documented = reference_fields("Spec")
        for version in crd["spec"]["versions"]:
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            missing = [p for p in schema_paths(spec) if p not in documented]
            self.assertEqual(missing, [], f"{version['name']}: spec fields missing from "
                                          "docs/manifest-reference.md")

    def test_every_crd_status_field_is_in_the_reference(self):
        with open(CRD, encoding="utf-8") as f:
            crd = yaml.safe_load(f)
        documented = reference_fields("Status")
        for version in crd["spec"]["versions"]:
            status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
            missing = [p for p in schema_paths(status) if p not in documented]
            self.assertEqual(missing, [], f"{version['name']}: status fields missing from "
                                          "docs/manifest-reference.md")

    def test_every_field_of_the_job_spec_model_is_in_the_reference(self):
        tmp = tempfile.mkdtemp(prefix="docs-probe-")
        self.addCleanup(shutil.rmtree, tmp, True)
        levels, stderr = model_fields(tmp)
        expected_levels = {"", "sourceDirectory", "inputs[]", "inputs[].source", "sideInputs[]",
                           "sideInputs[].source", "output"}
        self.assertEqual(set(levels), expected_levels,
                         "could not read the model's fields from parallelrun validate:\n" + stderr)
        documented = reference_fields("Spec")
        missing = []
        for parent, keys in sorted(levels.items()):
            for key in keys:
                path = f"{parent}.{key}" if parent else key
                if path not in documented:
                    missing.append(path)
        self.assertEqual(missing, [], "fields of the job-spec model missing from "
                                      "docs/manifest-reference.md")


# ---------------------------------------------------------------------------------------------
# Command blocks.

RUNNABLE = {"sh", "bash"}


class Sandbox:
    """A folder that looks like the repository root to a docs block."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="docs-blocks-")
        self.root = os.path.join(self.dir, "repo")
        os.mkdir(self.root)
        for name in os.listdir(ROOT):
            if name in ("examples", "build", ".git") or name.startswith("build-"):
                continue
            os.symlink(os.path.join(ROOT, name), os.path.join(self.root, name))
        shutil.copytree(os.path.join(ROOT, "examples"), os.path.join(self.root, "examples"),
                        ignore=shutil.ignore_patterns("output", "output.previous-*"))
        os.symlink(BUILD, os.path.join(self.root, "build"))
        self.home = os.path.join(self.dir, "home")
        os.mkdir(self.home)
        self.cluster_state = None
        self.kubeconfig = None

    def env(self, block):
        env = dict(os.environ)
        env["PATH"] = os.path.join(BUILD, "bin") + os.pathsep + env.get("PATH", "")
        env["HOME"] = self.home
        env.pop("KUBECONFIG", None)
        if "cluster" in block.flags:
            env["KUBECONFIG"] = self.start_cluster()
        return env

    def start_cluster(self):
        if self.kubeconfig:
            return self.kubeconfig
        testcluster = os.environ.get("TESTCLUSTER_BIN")
        if not testcluster:
            raise AssertionError("a `tested cluster` block needs TESTCLUSTER_BIN (set by CTest)")
        self.cluster_state = os.path.join(self.dir, "cluster")
        runtime = os.environ.get("PARALLELRUN_TEST_RUNTIME")  # CTest: container
        out = subprocess.run([testcluster, "up", "--state", self.cluster_state]
                             + (["--runtime", runtime] if runtime else []),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise AssertionError(f"testcluster up failed: {out.stdout}{out.stderr}")
        kubeconfig = out.stdout.strip().splitlines()[-1]
        # What the chart's crds/ folder installs; no operator runs. A cache folder of its own, so
        # the blocks' kubectl does not start from discovery read before the CRD existed.
        cache = os.path.join(self.dir, "setup-kube-cache")
        for args in (["apply", "-f", CRD],
                     ["wait", "--for=condition=Established",
                      "crd/parallelrunjobs.parallelrun.io", "--timeout=60s"]):
            done = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--cache-dir", cache]
                                  + args, capture_output=True, text=True, timeout=120,
                                  env=dict(os.environ, HOME=self.home))
            if done.returncode != 0:
                raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        self.kubeconfig = kubeconfig
        return self.kubeconfig

    def close(self):
        if self.cluster_state:
            subprocess.run([os.environ["TESTCLUSTER_BIN"], "down", "--state", self.cluster_state],
                           capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_block(sandbox, block):
    """None when the block succeeds, else the failure message naming file and line."""
    try:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body], cwd=sandbox.root,
                              env=sandbox.env(block), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return f"{block.where}: tested block ran longer than {BLOCK_TIMEOUT_S} s\n{e.output}"
    if proc.returncode == 0:
        return None
    output = (proc.stdout + proc.stderr)[-4000:]
    return (f"{block.where}: tested block exited {proc.returncode}\n--- block ---\n{block.body}"
            f"--- output ---\n{output}")


class DocBlocksTest(unittest.TestCase):
    def run_document(self, doc):
        blocks = blocks_of(doc)
        bad = [b.where + f": `{b.lang} {' '.join(sorted(b.flags))}`" for b in blocks
               if "tested" in b.flags and b.lang not in RUNNABLE]
        self.assertEqual(bad, [], "blocks marked tested must be sh or bash")
        # `tested on-failed-job` blocks need a failed job on a cluster with the operator: they
        # are run by tests/operator/test_why_failed_e2e.py.
        tested = [b for b in blocks if b.lang in RUNNABLE and "tested" in b.flags
                  and "on-failed-job" not in b.flags]
        if not tested:
            return
        sandbox = Sandbox()
        self.addCleanup(sandbox.close)
        for block in tested:
            failure = run_block(sandbox, block)
            if failure:
                self.fail(failure)  # later blocks build on this one


class DocManifestsTest(unittest.TestCase):
    """Every ParallelRunJob shown in a ```yaml block passes `parallelrun validate`."""

    def validate_document(self, doc):
        tmp = tempfile.mkdtemp(prefix="docs-manifests-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for block in blocks_of(doc):
            if block.lang not in ("yaml", "yml") or not re.search(r"^kind:\s*ParallelRunJob\s*$",
                                                                  block.body, re.M):
                continue
            path = os.path.join(tmp, f"line{block.line}.yaml")
            with open(path, "w") as f:
                f.write(block.body)
            proc = subprocess.run([BIN, "validate", path], capture_output=True, text=True,
                                  timeout=60)
            if "invalid" in block.flags:
                self.assertEqual(proc.returncode, 1, f"{block.where}: a manifest marked invalid "
                                                     f"passed parallelrun validate")
            else:
                self.assertEqual(proc.returncode, 0, f"{block.where}: parallelrun validate "
                                                     f"failed:\n{proc.stderr}")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(path):
    """GitHub's anchors of a markdown file's headings (outside code blocks)."""
    anchors = set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                text = line.lstrip("#").strip().lower()
                anchors.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
    return anchors


class DocLinksTest(unittest.TestCase):
    """Relative links in the docs name files that exist, and headings that exist."""

    def check_document(self, doc):
        broken = []
        prose = []
        in_code = False
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            for line in f:
                if FENCE.match(line):
                    in_code = not in_code
                elif not in_code:
                    prose.append(re.sub(r"`[^`]*`", "", line))
        for target in LINK.findall("".join(prose)):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), path)) \
                if path else os.path.join(ROOT, doc)
            if not os.path.exists(resolved):
                broken.append(f"{target}: no such file")
            elif fragment and resolved.endswith(".md") and \
                    fragment not in heading_anchors(resolved):
                broken.append(f"{target}: no heading with anchor #{fragment}")
        self.assertEqual(broken, [], f"broken links in {doc}")


def _add_document_tests():
    for doc in documents():
        slug = re.sub(r"[^a-z0-9]+", "_", doc.lower()).strip("_")
        setattr(DocBlocksTest, f"test_blocks_{slug}",
                lambda self, d=doc: self.run_document(d))
        setattr(DocManifestsTest, f"test_manifests_{slug}",
                lambda self, d=doc: self.validate_document(d))
        setattr(DocLinksTest, f"test_links_{slug}", lambda self, d=doc: self.check_document(d))


_add_document_tests()

if __name__ == "__main__":
    unittest.main()
