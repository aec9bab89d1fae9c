"""Render, install, upgrade and uninstall the parallelrun Helm chart with the real `helm`.

For tests (tests/chart and the end-to-end suites):

    import chartlib
    docs = chartlib.render_docs(values={"watchNamespace": "team-a"})     # helm template
    chartlib.install_chart(kubeconfig, values={"metrics.port": 18080, "health.port": 18081})
    chartlib.wait_for_operator(kubeconfig)
    chartlib.uninstall_chart(kubeconfig)

`helm` is found on PATH (HELM overrides the path); a missing helm is an error, not a skip
(scripts/install-deps.sh installs it). Helm's caches and discovery cache live in a temporary
folder of this process, so clusters on reused ports never see stale discovery. On the test
cluster the operator pod runs `parallelrun-operator` from the PATH that `testcluster up` was
started with (the process runtime ignores images), so put the build's bin/ on PATH before `up`.

OPERATOR_RBAC is the list of rights the operator may use (the common operator brief); the chart
must grant exactly these, and the operator must need no others.
"""

import atexit
import glob
import os
import re
import shutil
import subprocess
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "charts", "parallelrun")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")

DEFAULT_RELEASE = "parallelrun"
DEFAULT_NAMESPACE = "parallelrun-system"

_HELM_HOME = None


def helm_path():
    """The helm binary: $HELM, else `helm` on PATH. Raises when there is none."""
    path = os.environ.get("HELM") or shutil.which("helm")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("helm not found on PATH (set HELM or run scripts/install-deps.sh, "
                             "which installs helm v3.17 into /usr/local/bin)")
    return path


def helm_env():
    """The environment for helm: its config, cache and data folders and the kube discovery cache
    in a temporary folder of this process."""
    global _HELM_HOME
    if _HELM_HOME is None:
        _HELM_HOME = tempfile.mkdtemp(prefix="chartlib-helm-")
        atexit.register(shutil.rmtree, _HELM_HOME, True)
    env = dict(os.environ)
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data"), ("KUBECACHEDIR", "kube-cache")):
        env[var] = os.path.join(_HELM_HOME, sub)
    return env


def helm(*args, check=True, timeout=300):
    """Runs helm with args; returns the CompletedProcess. check: raise HelmError on failure."""
    out = subprocess.run([helm_path()] + list(args), capture_output=True, text=True,
                         timeout=timeout, env=helm_env())
    if check and out.returncode != 0:
        raise HelmError("helm %s failed (%d): %s%s" % (" ".join(args), out.returncode,
                                                       out.stdout, out.stderr.strip()))
    return out


def value_args(values=None, value_files=(), string_values=None):
    """--set / --set-string / -f arguments; values map --set paths to values."""
    args = []
    for key, value in (values or {}).items():
        args += ["--set", "%s=%s" % (key, set_literal(value))]
    for key, value in (string_values or {}).items():
        args += ["--set-string", "%s=%s" % (key, value)]
    for path in value_files:
        args += ["-f", path]
    return args


# (apiGroup, resource) -> verbs. Leases are granted in the release namespace only (a Role), the
# rest cluster-wide (ClusterRole) or in watchNamespace (Role).
OPERATOR_RBAC = {
    ("parallelrun.io", "parallelrunjobs"): {"list", "watch", "patch", "delete"},
    ("parallelrun.io", "parallelrunjobs/status"): {"update"},
    ("parallelrun.io", "parallelrunjobs/finalizers"): {"update"},
    ("", "pods"): {"list", "watch", "create", "delete"},
    ("", "secrets"): {"get", "create"},
    ("", "configmaps"): {"list", "watch", "create"},
    ("", "services"): {"list", "watch", "create"},
    ("", "events"): {"create", "patch"},
    ("networking.k8s.io", "networkpolicies"): {"create"},
    ("authorization.k8s.io", "localsubjectaccessreviews"): {"create"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
}
LEASE_RESOURCES = {("coordination.k8s.io", "leases")}


class HelmError(Exception):
    """helm failed; the message has its output."""


class RenderError(HelmError):
    """helm template failed; the message is its stderr."""


def fullname(release=DEFAULT_RELEASE):
    """The chart's object name prefix for a release (parallelrun.fullname in _helpers.tpl)."""
    return release if "parallelrun" in release else release + "-parallelrun"


def render(values=None, value_files=(), release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE,
           include_crds=False, string_values=None, validate_kubeconfig=None):
    """Runs `helm template`; returns stdout. validate_kubeconfig: add --validate against that
    cluster (helm checks every object against the cluster's discovery and OpenAPI)."""
    cmd = ["template", release, CHART, "--namespace", namespace]
    cmd += value_args(values, value_files, string_values)
    if include_crds:
        cmd.append("--include-crds")
    if validate_kubeconfig:
        cmd += ["--validate", "--kubeconfig", validate_kubeconfig]
    out = subprocess.run([helm_path()] + cmd, capture_output=True, text=True, timeout=120,
                         env=helm_env())
    if out.returncode != 0:
        raise RenderError(out.stderr.strip())
    return out.stdout


def set_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split_documents(text):
    """[(source, object)] from helm-template output; source is the '# Source:' path."""
    parts = re.split(r"^---\n# Source: ([^\n]*)\n", text, flags=re.M)
    if parts[0].strip():
        raise ValueError("output does not start with a '# Source:' document: %r" % parts[0][:80])
    docs = []
    for source, body in zip(parts[1::2], parts[2::2]):
        docs += [(source, obj) for obj in yaml.safe_load_all(body) if obj is not None]
    return docs


def render_docs(**kwargs):
    """render() parsed: the list of objects, in output order."""
    return [obj for _, obj in split_documents(render(**kwargs))]


def grants(rules):
    """Flattens RBAC rules to {(apiGroup, resource): verbs}."""
    out = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                out.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return out


def chart_grants(docs):
    """{(kind, namespace or None): grants} for every ClusterRole and Role in docs."""
    out = {}
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            out[(d["kind"], d["metadata"].get("namespace"))] = grants(d["rules"])
    return out


class Kubectl:
    """kubectl against one kubeconfig, with a fresh discovery cache per call."""

    def __init__(self, kubeconfig):
        self.kubeconfig = kubeconfig
        self.cache_root = tempfile.mkdtemp(prefix="chart-kubectl-")

    def __call__(self, *args, check=True, timeout=120, input=None):
        cache = tempfile.mkdtemp(dir=self.cache_root)
        cmd = [KUBECTL, "--kubeconfig", self.kubeconfig, "--cache-dir", cache] + list(args)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s %s" % (
                " ".join(args), out.returncode, out.stdout, out.stderr))
        return out


def ensure_namespace(kubectl, name):
    if kubectl("get", "namespace", name, check=False).returncode != 0:
        kubectl("create", "namespace", name)


def install_chart(kubeconfig, values=None, value_files=(), release=DEFAULT_RELEASE,
                  namespace=DEFAULT_NAMESPACE, timeout=120, wait=False):
    """`helm install RELEASE charts/parallelrun -n NAMESPACE --create-namespace`; returns the
    objects Helm installed: the chart's CRDs (crds/, first) then the release's manifest.

    values: {--set path: value}, e.g. {"metrics.port": 18080}. watchNamespace, when set, must
    exist before the install (Helm creates only the release namespace): it is created here, as a
    user would. wait: add --wait (the Deployment available, its pods Ready).
    """
    watch = (values or {}).get("watchNamespace")
    if watch:
        ensure_namespace(Kubectl(kubeconfig), watch)
    args = ["install", release, CHART, "-n", namespace, "--create-namespace",
            "--kubeconfig", kubeconfig, "--timeout", "%ds" % timeout]
    if wait:
        args.append("--wait")
    helm(*(args + value_args(values, value_files)), timeout=timeout + 60)
    crds = []
    for path in sorted(glob.glob(os.path.join(CHART, "crds", "*.yaml"))):
        with open(path) as f:
            crds += [o for o in yaml.safe_load_all(f) if o is not None]
    manifest = helm("get", "manifest", release, "-n", namespace, "--kubeconfig", kubeconfig).stdout
    return crds + [o for o in yaml.safe_load_all(manifest) if o is not None]


def wait_for_operator(kubeconfig, release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE,
                      timeout=120):
    """Waits until the operator Deployment's replicas are ready (kubectl rollout status)."""
    Kubectl(kubeconfig)("-n", namespace, "rollout", "status", "deployment/" + fullname(release),
                        "--timeout=%ds" % timeout, timeout=timeout + 30)
    wait_for_webhook(kubeconfig, timeout=timeout)


# Valid for the CRD's schema, invalid for the operator (an unknown input in the arguments): the
# admission webhook refuses it, which proves the webhook answers.
_WEBHOOK_PROBE = {
    "apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
    "metadata": {"name": "webhook-probe", "namespace": "default"},
    "spec": {"entryScript": "s.py", "sourceDirectory": {"path": "code"},
             "arguments": ["$(inputs.none)"],
             "inputs": [{"name": "i", "type": "file", "source": {"path": "in"}}],
             "output": {"path": "out"}}}


def wait_for_webhook(kubeconfig, timeout=120):
    """Waits until the admission webhook answers (a Deployment is rolled out before its process
    listens, and the webhook's failurePolicy is Fail): a server-side dry run of an invalid job
    must be refused by the webhook itself."""
    import json
    import time
    kubectl = Kubectl(kubeconfig)
    deadline = time.monotonic() + timeout
    while True:
        out = kubectl("create", "--dry-run=server", "-f", "-", check=False,
                      input=json.dumps(_WEBHOOK_PROBE))
        if "denied the request" in out.stderr:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the admission webhook did not answer: " + out.stderr)
        time.sleep(0.5)


def uninstall_chart(kubeconfig, release=DEFAULT_RELEASE, namespace=DEFAULT_NAMESPACE,
                    timeout=120):
    """`helm uninstall --wait`: removes every object of the release; the CRDs stay (Helm never
    deletes crds/), and so does the namespace."""
    helm("uninstall", release, "-n", namespace, "--kubeconfig", kubeconfig, "--wait",
         "--timeout", "%ds" % timeout, timeout=timeout + 60)
