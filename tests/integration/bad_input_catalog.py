"""The bad-input catalog (issue 12): every bad input a user can give `parallelrun` (manifest
fields, data, entry scripts, command-line usage, requests to the coordinator), run with the real
binary, and what the user sees. test_bad_input.CatalogTest runs them all, checks that each message
names the field or file it is about, and that docs/bad-inputs.md is this catalog rendered;
`python3 bad_input_catalog.py` (from tests/integration) rewrites docs/bad-inputs.md.

A case is (section, what the user did, how to set it up, what the output must name). Setups get a
job folder with a valid job (manifest `job.yaml`, `code/score.py`, three input files) and change
it; most are checked with `parallelrun validate` or stop in `parallelrun run`'s checks before
anything starts, so the whole catalog takes seconds, not minutes."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jobkit import BIN, PYTHON, manifest, wait_for  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(ROOT, "docs", "bad-inputs.md")
SCRIPT = "import os\ndef run(mini_batch):\n    return [os.path.basename(p) for p in mini_batch]\n"


class Case:
    def __init__(self, section, what, needles, spec=None, raw=None, edit=None, files=None,
                 command="validate", args=None, setup=None, exit_code=1, source="stderr"):
        self.section = section
        self.what = what            # the bad input, as the table's first column says it
        self.needles = needles      # the field / file / flag the message must name
        self.spec = spec or {}      # spec fields to set on the valid manifest (None value: drop)
        self.raw = raw              # the manifest's whole text instead
        self.edit = edit            # function(manifest dict) changing it in place
        self.files = files or {}    # extra files {relative path: content}
        self.command = command      # validate | run | cli (args are the whole argv after BIN)
        self.args = args or []
        self.setup = setup          # function(job root) for anything else
        self.exit_code = exit_code
        self.source = source        # stderr | result (logs/job_result.txt) | output (the
        #                             coordinator's failure lines on stderr+stdout) | warnings


def drop(*keys):
    def edit(m):
        for k in keys:
            m["spec"].pop(k, None)
    return edit


def set_meta(**fields):
    def edit(m):
        m["metadata"].update(fields)
    return edit


def top(**fields):
    def edit(m):
        m.update(fields)
    return edit


def input0(**fields):
    def edit(m):
        m["spec"]["inputs"][0].update(fields)
    return edit


def tabular_input(**fields):
    def edit(m):
        m["spec"]["inputs"] = [dict({"name": "t", "type": "tabular", "source": {"path": "tab/"}},
                                    **fields)]
        m["spec"]["miniBatchSize"] = "1MB"
    return edit


def mkfifo_and_link(root):
    os.mkfifo(os.path.join(root, "data", "pipe"))
    os.symlink("/nonexistent/target", os.path.join(root, "data", "dead-link"))


V = "validate"
M = "Manifest: structure"
F = "Manifest: fields"
R = "Manifest: references between fields"
D = "Data and folders"
E = "Entry script"
C = "Command line"
Q = "Requests to the coordinator"

CASES = [
    # --- structure ------------------------------------------------------------------------------
    Case(M, "an empty manifest file", ["job.yaml"], raw=""),
    Case(M, "YAML that does not parse (an unclosed `[`)", ["job.yaml:3"],
         raw="apiVersion: parallelrun.io/v1alpha1\nspec: [unclosed\n"),
    Case(M, "a list instead of a mapping at the top", ["job.yaml"], raw="- a\n- b\n"),
    Case(M, "JSON with a trailing comma", ["job.yaml"], raw='{"apiVersion": "x",}\n'),
    Case(M, "a wrong `apiVersion`", ["apiVersion"], edit=top(apiVersion="v1")),
    Case(M, "a wrong `kind`", ["kind"], edit=top(kind="Job")),
    Case(M, "no `metadata.name`", ["metadata.name"], edit=top(metadata={})),
    Case(M, "an upper-case name", ["metadata.name"], edit=set_meta(name="MyJob")),
    Case(M, "a name of 40 characters", ["metadata.name"], edit=set_meta(name="a" * 40)),
    Case(M, "a name of 2 characters", ["metadata.name"], edit=set_meta(name="ab")),
    Case(M, "no `spec`", ["spec"], edit=lambda m: m.pop("spec")),
    Case(M, "`spec` is a string", ["spec"], edit=top(spec="x")),
    Case(M, "a misspelt spec field (`nodeCont`)", ["spec.nodeCont"], spec={"nodeCont": 2}),
    Case(M, "an unknown top-level field", ["status2"], edit=top(status2={})),
    Case(M, "several errors at once", ["spec.nodeCount", "spec.runMaxTry", "2 error"],
         spec={"nodeCount": 0, "runMaxTry": "three"}),
    # --- fields ---------------------------------------------------------------------------------
    Case(F, "no `entryScript`", ["spec.entryScript"], edit=drop("entryScript")),
    Case(F, "an entry script that is not `.py` or `.so`", ["spec.entryScript"],
         spec={"entryScript": "score.sh"}),
    Case(F, "an absolute entry script path", ["spec.entryScript"],
         spec={"entryScript": "/etc/score.py"}),
    Case(F, "an entry script path with `..`", ["spec.entryScript"],
         spec={"entryScript": "../score.py"}),
    Case(F, "no `sourceDirectory`", ["spec.sourceDirectory"], edit=drop("sourceDirectory")),
    Case(F, "`sourceDirectory` with an unknown key", ["spec.sourceDirectory"],
         spec={"sourceDirectory": {"dir": "code/"}}),
    Case(F, "no `inputs`", ["spec.inputs"], edit=drop("inputs")),
    Case(F, "an empty `inputs` list", ["spec.inputs"], spec={"inputs": []}),
    Case(F, "an input without a name", ["spec.inputs[0].name"],
         edit=lambda m: m["spec"]["inputs"][0].pop("name")),
    Case(F, "an upper-case input name", ["spec.inputs[0].name"], edit=input0(name="Docs")),
    Case(F, "an unknown input type", ["spec.inputs[0].type"], edit=input0(type="image")),
    Case(F, "an input without a source", ["spec.inputs[0].source"],
         edit=lambda m: m["spec"]["inputs"][0].pop("source")),
    Case(F, "an input source with an absolute path", ["spec.inputs[0].source"],
         edit=input0(source={"volume": "v", "path": "/abs"}),
         spec={"volumes": [{"name": "v", "emptyDir": {}}]}),
    Case(F, "a `pattern` that is a number", ["spec.inputs[0].pattern"], edit=input0(pattern=5)),
    Case(F, "`format` on a file input", ["spec.inputs[0].format"], edit=input0(format="csv")),
    Case(F, "`header` on a file input", ["spec.inputs[0].header"], edit=input0(header=True)),
    Case(F, "an unknown tabular `format`", ["spec.inputs[0].format"],
         edit=tabular_input(format="parquet")),
    Case(F, "an empty name in `partitionKeys`", ["spec.partitionKeys[0]"],
         spec={"partitionKeys": [""], "miniBatchSize": None},
         edit=input0(partitionFormat="{user}/*")),
    Case(F, "a key listed twice in `partitionKeys`", ["spec.partitionKeys[1]", "user"],
         spec={"partitionKeys": ["user", "user"], "miniBatchSize": None},
         edit=input0(partitionFormat="{user}/*")),
    Case(F, "`miniBatchSize` together with `partitionKeys`", ["spec.miniBatchSize",
                                                             "spec.partitionKeys"],
         spec={"partitionKeys": ["user"]}, edit=input0(partitionFormat="{user}/*")),
    Case(F, "`partitionKeys` on a file input without `partitionFormat`",
         ["spec.inputs[0].partitionFormat", "user"],
         spec={"partitionKeys": ["user"], "miniBatchSize": None}),
    Case(F, "a `partitionFormat` without `partitionKeys`", ["spec.inputs[0].partitionFormat"],
         edit=input0(partitionFormat="{user}/*")),
    Case(F, "a `partitionFormat` with a date capture (`{day:yyyy/MM/dd}`)",
         ["spec.inputs[0].partitionFormat", "{day:yyyy/MM/dd}"],
         spec={"partitionKeys": ["day"], "miniBatchSize": None},
         edit=input0(partitionFormat="{day:yyyy/MM/dd}/*")),
    Case(F, "a partition key that `partitionFormat` does not capture",
         ["spec.inputs[0].partitionFormat", "genres", "spec.partitionKeys"],
         spec={"partitionKeys": ["user", "genres"], "miniBatchSize": None},
         edit=input0(partitionFormat="{user}/{season}/*.wav")),
    Case(F, "no `output`", ["spec.output"], edit=drop("output")),
    Case(F, "`miniBatchSize` 0", ["spec.miniBatchSize"], spec={"miniBatchSize": 0}),
    Case(F, "`miniBatchSize` negative", ["spec.miniBatchSize"], spec={"miniBatchSize": -5}),
    Case(F, "`miniBatchSize` with a unit on a file input", ["spec.miniBatchSize"],
         spec={"miniBatchSize": "10MB"}),
    Case(F, "`miniBatchSize` that is not a size", ["spec.miniBatchSize"],
         spec={"miniBatchSize": "lots"}),
    Case(F, "`errorThreshold` below -1", ["spec.errorThreshold"], spec={"errorThreshold": -2}),
    Case(F, "`errorThreshold` as a string", ["spec.errorThreshold"],
         spec={"errorThreshold": "10"}),
    Case(F, "`allowedFailedCount` below -1", ["spec.allowedFailedCount"],
         spec={"allowedFailedCount": -5}),
    Case(F, "`allowedFailedPercent` over 100", ["spec.allowedFailedPercent"],
         spec={"allowedFailedPercent": 150}),
    Case(F, "an unknown `outputAction`", ["spec.outputAction"], spec={"outputAction": "append"}),
    Case(F, "`appendRowFileName` with a `/`", ["spec.appendRowFileName"],
         spec={"appendRowFileName": "a/b.txt"}),
    Case(F, "`appendRowHeader` as a string", ["spec.appendRowHeader"],
         spec={"appendRowHeader": "yes"}),
    Case(F, "`nodeCount` 0", ["spec.nodeCount"], spec={"nodeCount": 0}),
    Case(F, "`nodeCount` 1.5", ["spec.nodeCount"], spec={"nodeCount": 1.5}),
    Case(F, "`nodeCount` beyond int32", ["spec.nodeCount"], spec={"nodeCount": 99999999999}),
    Case(F, "`processCountPerNode` 0", ["spec.processCountPerNode"],
         spec={"processCountPerNode": 0}),
    Case(F, "an unknown `loggingLevel`", ["spec.loggingLevel"], spec={"loggingLevel": "TRACE"}),
    Case(F, "`runInvocationTimeout` 0", ["spec.runInvocationTimeout"],
         spec={"runInvocationTimeout": 0}),
    Case(F, "`runMaxTry` 0", ["spec.runMaxTry"], spec={"runMaxTry": 0}),
    Case(F, "`progressUpdateTimeout` 0", ["spec.progressUpdateTimeout"],
         spec={"progressUpdateTimeout": 0}),
    Case(F, "`initTimeout` 0", ["spec.initTimeout"], spec={"initTimeout": 0}),
    Case(F, "`initTimeout` as a duration string", ["spec.initTimeout"],
         spec={"initTimeout": "10m"}),
    Case(F, "`resourceMonitorInterval` negative", ["spec.resourceMonitorInterval"],
         spec={"resourceMonitorInterval": -1}),
    Case(F, "`arguments` that is not a list", ["spec.arguments"], spec={"arguments": "--x 1"}),
    Case(F, "a number among `arguments`", ["spec.arguments[1]"],
         spec={"arguments": ["--n", 5]}),
    Case(F, "`retryFrom` that is not a string", ["spec.retryFrom"], spec={"retryFrom": 3}),
    Case(F, "`suspend` as a string", ["spec.suspend"], spec={"suspend": "no"}),
    Case(F, "`activeDeadlineSeconds` 0", ["spec.activeDeadlineSeconds"],
         spec={"activeDeadlineSeconds": 0}),
    Case(F, "`backoffLimit` negative", ["spec.backoffLimit"], spec={"backoffLimit": -1}),
    # --- references -----------------------------------------------------------------------------
    Case(R, "an `arguments` reference to an unknown side input", ["spec.arguments[1]"],
         spec={"arguments": ["--m", "$(sideInputs.nope)"]}),
    Case(R, "an unclosed `$(inputs.docs` reference", ["spec.arguments[0]"],
         spec={"arguments": ["$(inputs.docs"]}),
    Case(R, "a malformed reference `$(inputs)`", ["spec.arguments[0]"],
         spec={"arguments": ["$(inputs)"]}),
    Case(R, "a data reference to a volume not in `spec.volumes`", ["spec.inputs[0].source"],
         edit=input0(source={"volume": "nope", "path": "in"})),
    Case(R, "a volume without a name", ["spec.volumes[0]"],
         spec={"volumes": [{"emptyDir": {}}]}),
    Case(R, "two volumes with one name", ["spec.volumes[1].name"],
         spec={"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
    Case(R, "a side input named like an input", ["spec.sideInputs[0].name"],
         spec={"sideInputs": [{"name": "docs", "source": {"path": "data/"}}]}),
    Case(R, "two models with one name", ["spec.models[1].name"],
         spec={"models": [{"name": "iris", "source": {"path": "m1/"}},
                          {"name": "iris", "source": {"path": "m2/"}}]}),
    Case(R, "`spec.env` setting `AZUREML_MODEL_DIR` of a job with `models`", ["spec.env[0].name"],
         spec={"models": [{"name": "iris", "source": {"path": "m1/"}}],
               "env": [{"name": "AZUREML_MODEL_DIR", "value": "/models"}]}),
    Case(R, "two inputs with one name", ["spec.inputs[1].name"],
         spec={"inputs": [{"name": "a", "type": "file", "source": {"path": "data/"}},
                          {"name": "a", "type": "file", "source": {"path": "data/"}}]}),
    Case(R, "a file input and a tabular input together", ["spec.inputs[1].type"],
         spec={"inputs": [{"name": "a", "type": "file", "source": {"path": "data/"}},
                          {"name": "b", "type": "tabular", "source": {"path": "tab/"}}]}),
    # --- data and folders (parallelrun run: checked before anything starts) ---------------------
    Case(D, "an input folder that does not exist", ["spec.inputs[0].source", "nowhere"],
         command="run", edit=input0(source={"path": "nowhere/"})),
    Case(D, "an input path that is a file", ["spec.inputs[0].source", "afile"], command="run",
         edit=input0(source={"path": "afile"}), files={"afile": "x"}),
    Case(D, "a `sourceDirectory` that does not exist", ["spec.sourceDirectory", "nocode"],
         command="run", spec={"sourceDirectory": {"path": "nocode/"}}),
    Case(D, "a side input that does not exist", ["spec.sideInputs[0].source", "models/none"],
         command="run", spec={"sideInputs": [{"name": "model",
                                              "source": {"path": "models/none/"}}]}),
    Case(D, "a model that does not exist", ["spec.models[0].source", "models/none"],
         command="run", spec={"models": [{"name": "iris", "source": {"path": "models/none/"}}]}),
    Case(D, "an output folder under a file", ["spec.output", "blocker"], command="run",
         spec={"output": {"path": "blocker/out/"}}, files={"blocker": "a file"}),
    Case(D, "an output path that is a file", ["spec.output", "outfile"], command="run",
         spec={"output": {"path": "outfile"}}, files={"outfile": "a file"}),
    Case(D, "a `retryFrom` folder that does not exist", ["spec.retryFrom", "old-run"],
         command="run", spec={"retryFrom": "old-run/"}),
    Case(D, "a PVC volume not bound with `--volume`", ["--volume data="], command="run",
         spec={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
               "inputs": [{"name": "docs", "type": "file",
                           "source": {"volume": "data", "path": "in/"}}]}),
    Case(D, "a tabular file of an unknown format (`data.parquet`)", ["data.parquet"],
         command="run", edit=tabular_input(), files={"tab/data.parquet": "PAR1"},
         exit_code=1, source="output"),
    Case(D, "a FIFO and a dangling symbolic link among the input files (a warning; the job runs)",
         ["spec.inputs[0]", "pipe", "dead-link"], command="run", setup=mkfifo_and_link,
         exit_code=0, source="warnings"),
    Case(D, "no input file matches `partitionFormat`",
         ["spec.inputs[0].partitionFormat", "{user}/{genres}.wav", "f0.txt"],
         command="run", spec={"partitionKeys": ["user"], "miniBatchSize": None},
         edit=input0(partitionFormat="{user}/{genres}.wav"), source="output"),
    Case(D, "input files that do not match `partitionFormat` (a warning; the job runs)",
         ["spec.inputs[0].partitionFormat", "f0.txt"], command="run",
         spec={"partitionKeys": ["user"], "miniBatchSize": None},
         edit=input0(partitionFormat="{user}/{genres}.wav"),
         files={"data/ann/rock.wav": "1\n"}, exit_code=0, source="warnings"),
    Case(D, "a tabular file without a column named in `partitionKeys`",
         ["b.csv", "Brand", "spec.partitionKeys"], command="run",
         edit=lambda m: (tabular_input()(m), m["spec"].pop("miniBatchSize"),
                         m["spec"].update(partitionKeys=["Store", "Brand"])),
         files={"tab/a.csv": "Store,Brand\n1,x\n", "tab/b.csv": "Store,brand\n1,x\n"},
         source="output"),
    Case(D, "an input folder with no files", ["docs", "<job>/empty"], command="run",
         edit=input0(source={"path": "empty/"}), setup=lambda r: os.makedirs(
             os.path.join(r, "empty")), exit_code=42, source="result"),
    # --- entry script ---------------------------------------------------------------------------
    Case(E, "an entry script that does not exist", ["spec.entryScript", "missing.py"],
         command="run", spec={"entryScript": "missing.py"}),
    Case(E, "an entry script with a syntax error", ["spec.entryScript", "broken.py", "line 1"],
         command="run", spec={"entryScript": "broken.py"},
         files={"code/broken.py": "def run(mini_batch:\n    return 1\n"}),
    Case(E, "an entry script without `run()`", ["norun.py", "run"], command="run",
         spec={"entryScript": "norun.py", "processCountPerNode": 1},
         files={"code/norun.py": "def init():\n    pass\n"}, exit_code=42, source="result"),
    Case(E, "`init()` that raises", ["init()", "ValueError"], command="run",
         spec={"entryScript": "badinit.py", "processCountPerNode": 1},
         files={"code/badinit.py": "def init():\n    raise ValueError('no model file')\n"
                                   "def run(mb):\n    return mb\n"},
         exit_code=42, source="result"),
    Case(E, "`init()` that never returns (`initTimeout: 3`)", ["initTimeout"], command="run",
         spec={"entryScript": "hang.py", "processCountPerNode": 1, "initTimeout": 3},
         files={"code/hang.py": "import time\ndef init():\n    time.sleep(3600)\n"
                                "def run(mb):\n    return mb\n"},
         exit_code=42, source="result"),
    Case(E, "`run()` that returns None", ["None"], command="run",
         spec={"entryScript": "none.py", "processCountPerNode": 1, "runMaxTry": 1},
         files={"code/none.py": "def run(mini_batch):\n    pass\n"},
         exit_code=42, source="result"),
    # --- command line ---------------------------------------------------------------------------
    Case(C, "`parallelrun` with no command", ["usage"], command="cli", args=[]),
    Case(C, "an unknown command", ["frobnicate"], command="cli", args=["frobnicate"]),
    Case(C, "`run` without a manifest", ["usage: parallelrun run"], command="cli",
         args=["run"]),
    Case(C, "`run` with two manifests", ["usage: parallelrun run"], command="cli",
         args=["run", "job.yaml", "job.yaml"]),
    Case(C, "`run` of a manifest that does not exist", ["missing.yaml"], command="cli",
         args=["run", "missing.yaml"]),
    Case(C, "`validate` of a manifest that does not exist", ["missing.yaml"], command="cli",
         args=["validate", "missing.yaml"]),
    Case(C, "`--nodes 0`", ["--nodes"], command="cli", args=["run", "job.yaml", "--nodes", "0"]),
    Case(C, "`--nodes` that is not a number", ["--nodes"], command="cli",
         args=["run", "job.yaml", "--nodes", "two"]),
    Case(C, "an unknown flag", ["--bogus"], command="cli", args=["run", "job.yaml", "--bogus"]),
    Case(C, "a flag without its value", ["--nodes"], command="cli",
         args=["run", "job.yaml", "--nodes"]),
    Case(C, "`--volume` without `=`", ["--volume"], command="cli",
         args=["run", "job.yaml", "--volume", "data"]),
    Case(C, "`--python` that does not exist", ["--python", "/nonexistent/python3"],
         command="cli", args=["run", "job.yaml", "--python", "/nonexistent/python3"]),
    Case(C, "`agent` without its flags", ["--coordinator"], command="cli", args=["agent"]),
    Case(C, "`coordinator` without `--spec`", ["--spec"], command="cli", args=["coordinator"]),
    Case(C, "`agent --token-file` that does not exist", ["--token-file", "no-token"],
         command="cli", args=["agent", "--coordinator", "http://127.0.0.1:1", "--token-file",
                              "no-token", "--node-name", "n"]),
    # --- requests (a standalone coordinator; see RequestCases) ----------------------------------
    Case(Q, "no `Authorization` header", ["401"], command="request",
         args=["GET", "/v1/progress", None, None]),
    Case(Q, "a wrong token", ["401"], command="request",
         args=["GET", "/v1/progress", "wrong-token", None]),
    Case(Q, "a body that is not JSON", ["400"], command="request",
         args=["POST", "/v1/register", "TOKEN", b"{not json"]),
    Case(Q, "a register request without `node`", ["400", "node"], command="request",
         args=["POST", "/v1/register", "TOKEN", b'{"pid": 1}']),
    Case(Q, "an unknown path", ["404"], command="request",
         args=["GET", "/v1/nothing-here", "TOKEN", None]),
]


class Job:
    """A temporary folder with a valid job, changed by one case."""

    def __init__(self, case):
        self.root = tempfile.mkdtemp(prefix="parallelrun-catalog-")
        self.case = case
        for i in range(3):
            self.write(f"data/f{i}.txt", f"item {i}\n")
        self.write("code/score.py", SCRIPT)
        self.write("tab/rows.csv", "a,b\n1,2\n")
        for rel, content in case.files.items():
            self.write(rel, content)
        if case.raw is not None:
            self.write("job.yaml", case.raw)
        else:
            m = manifest(name="catalog")
            m["spec"]["processCountPerNode"] = 1
            for k, v in case.spec.items():
                m["spec"][k] = v
            if case.edit:
                case.edit(m)
            self.write("job.yaml", json.dumps(m, indent=2))
        if case.setup:
            case.setup(self.root)

    def write(self, rel, content):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)

    def cleanup(self):
        shutil.rmtree(self.root, True)


def normalise(text, root):
    text = text.replace(os.path.realpath(root), "<job>").replace(root, "<job>")
    text = text.replace(os.path.realpath(BIN), "parallelrun")
    text = re.sub(r"/tmp/parallelrun-[A-Za-z0-9_-]+", "<tmp>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z)?", "<time>", text)
    text = re.sub(r"pid \d+", "pid N", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return text


def run_case(case, coordinator=None):
    """(exit code, what the user sees) for one case, with the real binary."""
    if case.command == "request":
        return coordinator.request(*case.args)
    job = Job(case)
    try:
        if case.command == "cli":
            argv = [BIN] + case.args
        else:
            argv = [BIN, case.command, os.path.join(job.root, "job.yaml")]
        env = dict(os.environ, PARALLELRUN_PYTHON=PYTHON)
        proc = subprocess.run(argv, cwd=job.root, capture_output=True, text=True, timeout=120,
                              env=env)
        if case.source == "result":
            seen = result_summary(os.path.join(job.root, "output", "logs", "job_result.txt"))
        elif case.source == "warnings":
            seen = "\n".join(line for line in proc.stderr.splitlines()
                              if line.startswith("parallelrun coordinator: warning:"))
        elif case.source == "output":
            # The coordinator's own lines: the agents' and the progress overview's depend on
            # timing (an agent may or may not log "coordinator not reachable yet" first).
            seen = "\n".join(line for line in (proc.stderr + proc.stdout).splitlines()
                             if line.startswith("parallelrun coordinator:")
                             and ("ailed" in line or "error" in line.lower()))
        else:
            seen = proc.stderr
        return proc.returncode, normalise(seen, job.root).strip()
    finally:
        job.cleanup()


def result_summary(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        return f"(no job_result.txt: {e})"
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.startswith("message:")]
    return "\n".join(keep)


class Coordinator:
    """A standalone coordinator of a valid job, for the request cases."""

    def __init__(self):
        self.job = Job(Case(Q, "", []))
        self.token = "catalog-token-0123456789"
        token_file = os.path.join(self.job.root, "token")
        with open(token_file, "w") as f:
            f.write(self.token + "\n")
        address = os.path.join(self.job.root, "address")
        self.proc = subprocess.Popen(
            [BIN, "coordinator", "--spec", os.path.join(self.job.root, "job.yaml"), "--listen",
             "127.0.0.1:0", "--token-file", token_file, "--address-file", address, "--paths",
             "local", "--manifest-dir", self.job.root, "--no-echo"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

        def url():
            try:
                with open(address) as f:
                    return f.read().strip()
            except OSError:
                return None
        self.url = wait_for("the coordinator's address", url, 60)

    def request(self, method, path, token, body):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token:
            req.add_header("Authorization", "Bearer " + (self.token if token == "TOKEN" else token))
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return 0, f"HTTP {r.status}: {r.read().decode(errors='replace')}"
        except urllib.error.HTTPError as e:
            return 0, normalise(f"HTTP {e.code}: {e.read().decode(errors='replace')}",
                                self.job.root).strip()

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.job.cleanup()


def run_all():
    """[(case, exit code, seen)] for every case."""
    out = []
    coordinator = Coordinator()
    try:
        for case in CASES:
            code, seen = run_case(case, coordinator)
            out.append((case, code, seen))
    finally:
        coordinator.close()
    return out


def cell(text, limit=400):
    """What the user saw, one code span per line (so that `<job>`, `*` and `[...](...)` in
    messages stay literal), lines joined with <br>."""
    text = text if len(text) <= limit else text[:limit] + " …"
    spans = []
    for line in text.splitlines():
        line = line.strip().replace("`", "'")
        if line:
            spans.append("`" + line.replace("|", "\\|") + "`")
    return "<br>".join(spans) if spans else "(nothing)"


def render(results):
    lines = [
        "# Bad inputs and what you see",
        "",
        "<!-- Generated by tests/integration/bad_input_catalog.py from the real binary; "
        "tests/integration/test_bad_input.py fails when it is stale. -->",
        "",
        "Every bad input below was given to the real `parallelrun` binary by "
        "`tests/integration/test_bad_input.py`, which checks that each message names the field, "
        "file or flag concerned and that this page is up to date (rewrite it with "
        "`cd tests/integration && python3 bad_input_catalog.py`). Paths are shortened: `<job>` is "
        "the job's folder. Exit codes: 1 invalid input (nothing ran and nothing in the output "
        "folder was touched), 42 the job ran and failed (the text is from "
        "`logs/job_result.txt`), 0 the job ran (warnings only).",
        "",
        f"{len(results)} bad inputs in {len({c.section for c, _, _ in results})} groups.",
    ]
    section = None
    for case, code, seen in results:
        if case.section != section:
            section = case.section
            lines += ["", "## " + section, "", "| Input | Command | Exit | What you see |",
                      "|---|---|---|---|"]
        if case.command == "cli":
            command = "`parallelrun " + " ".join(case.args) + "`" if case.args else "`parallelrun`"
        elif case.command == "request":
            command = f"`{case.args[0]} {case.args[1]}`"
        else:
            command = f"`parallelrun {case.command} job.yaml`"
        exit_text = "—" if case.command == "request" else str(code)
        what = case.what.replace("|", "\\|")
        lines.append(f"| {what} | {command} | {exit_text} | {cell(seen)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(DOC, "w") as f:
        f.write(render(run_all()))
    print("wrote", DOC)
