"""Static checks of the Dockerfile (no Docker engine runs here, so CI proves its commands instead).

- The build stage runs the install script, the build script and the unit-test command that CI
  runs (.ci/run -> scripts/test.sh), not copies of them.
- Every file it copies exists: sources in the repository (and not hidden by .dockerignore),
  build outputs in the build folder (PR_BUILD_DIR, default build/).
- The final stage is Debian 12 slim, runs as the non-root uid the chart uses, has the OCI labels,
  and installs a package for every shared library its binaries load (ldd + dpkg -S).
Run by CTest (chart.dockerfile).
"""

import fnmatch
import json
import os
import re
import shlex
import subprocess
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("PR_BUILD_DIR", os.path.join(REPO, "build"))


def read(*path):
    with open(os.path.join(REPO, *path)) as f:
        return f.read()


class Stage:
    def __init__(self, image, name):
        self.image = image
        self.name = name
        self.instructions = []  # (INSTRUCTION, argument text; ${ARG}s expanded in WORKDIR, COPY)
        self.workdir = "/"
        self.args = {}  # ARG name -> default

    def all(self, instruction):
        return [args for ins, args in self.instructions if ins == instruction]

    def commands(self):
        """The shell commands of every RUN, a `a && b` chain split into its commands."""
        return [c.strip() for run in self.all("RUN") for c in run.split(" && ")]


def parse_dockerfile(text):
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages = []
    for line in logical:
        instruction, _, args = line.strip().partition(" ")
        instruction, args = instruction.upper(), " ".join(args.split())
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
            continue
        stage = stages[-1]
        if instruction == "ARG":
            name, _, default = args.partition("=")
            stage.args[name] = default
        if instruction in ("WORKDIR", "COPY"):
            args = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: stage.args[m.group(1) or m.group(2)], args)
        stage.instructions.append((instruction, args))
        if instruction == "WORKDIR":
            stages[-1].workdir = os.path.join(stages[-1].workdir, args)
    return stages


def copy_sources(args):
    """(from stage or None, [sources], destination) of a COPY's argument text."""
    words = shlex.split(args)
    source_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag[len("--from="):]
    return source_stage, words[:-1], words[-1]


def dockerignore_patterns():
    return [line.strip() for line in read(".dockerignore").splitlines()
            if line.strip() and not line.startswith("#")]


def ignored(path, patterns):
    """Whether .dockerignore hides path (or a folder above it); '!' patterns re-include."""
    parts = path.split("/")
    hidden = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        p = p.strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, p) or (
                    p.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], p[3:])):
                hidden = not negate
                break
    return hidden


def project_version():
    return re.search(r"project\(parallelrun VERSION ([0-9.]+)", read("CMakeLists.txt")).group(1)


def run_lines(script):
    """The command lines of a shell script (comments, blanks and set/cd lines dropped)."""
    return [line.strip() for line in read(script).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stages = parse_dockerfile(read("Dockerfile"))
        cls.build = cls.stages[0]
        cls.final = cls.stages[-1]

    def test_two_debian_12_stages(self):
        self.assertEqual(len(self.stages), 2)
        self.assertEqual(self.build.image, "debian:bookworm")
        self.assertEqual(self.build.name, "build")
        self.assertEqual(self.final.image, "debian:bookworm-slim")

    def test_build_stage_runs_the_install_and_build_scripts_that_ci_runs(self):
        self.assertIn("bash scripts/test.sh", run_lines(".ci/run"))
        ci = run_lines("scripts/test.sh")
        runs = self.build.commands()
        for command in ("bash scripts/install-deps.sh", "bash scripts/build.sh default"):
            self.assertIn(command, runs, "the build stage must RUN " + command)
            self.assertIn(command, ci, "CI (scripts/test.sh) no longer runs " + command)
        self.assertLess(runs.index("bash scripts/install-deps.sh"),
                        runs.index("bash scripts/build.sh default"))
        # build.sh builds the preset into build/ (CMakePresets.json), where COPY --from looks.
        presets = json.loads(read("CMakePresets.json"))
        default = [p for p in presets["configurePresets"] if p["name"] == "default"][0]
        self.assertEqual(default["binaryDir"], "${sourceDir}/build")

    def test_build_stage_runs_the_unit_tests_that_ci_runs(self):
        ctest = [r for r in self.build.commands() if r.startswith("ctest ")]
        self.assertEqual(len(ctest), 1, "one ctest command in the build stage")
        words = shlex.split(ctest[0])
        self.assertEqual(words[1:3], ["--preset", "default"])
        self.assertIn("ctest --preset default", run_lines("scripts/test.sh"))
        self.assertEqual(words[words.index("--label-regex") + 1], "unit")
        # The same label CI's asan test preset selects.
        presets = json.loads(read("CMakePresets.json"))
        asan = [p for p in presets["testPresets"] if p["name"] == "asan"][0]
        self.assertEqual(asan["filter"]["include"]["label"], "unit")
        # Every excluded test suite still exists (a stale exclusion would hide nothing, a renamed
        # suite would fail the image build).
        if "--exclude-regex" in words:
            pattern = words[words.index("--exclude-regex") + 1]
            suites = re.match(r"^\^\(([\w|]+)\)\\\.$", pattern)
            self.assertIsNotNone(suites, "exclude pattern: " + pattern)
            sources = subprocess.run(["grep", "-rhoE", r"^TEST(_F)?\(\w+", "--include=*_test.cc",
                                      REPO], capture_output=True, text=True).stdout
            defined = {line.split("(")[1] for line in sources.split()}
            for suite in suites.group(1).split("|"):
                self.assertIn(suite, defined)

    def test_build_stage_layer_keeps_only_what_the_final_stage_copies(self):
        # The build tree (3 GB with debug info) must not become a layer: the RUN that builds ends
        # by deleting all of build/ but bin/ and share/, and every binary in bin/ but the copied
        # ones. Whatever the final stage copies survives that.
        run = [r for r in self.build.all("RUN") if "bash scripts/build.sh default" in r]
        self.assertEqual(len(run), 1)
        commands = run[0].split(" && ")
        self.assertEqual(commands[0], "bash scripts/build.sh default")
        prune_top = [c for c in commands if c.startswith("find build -mindepth 1 -maxdepth 1 ")]
        prune_bin = [c for c in commands if c.startswith("find build/bin ")]
        self.assertEqual(len(prune_top), 1, run[0])
        self.assertEqual(len(prune_bin), 1, run[0])
        kept_top = set(re.findall(r"! -name (\S+)", prune_top[0]))
        kept_bin = set(re.findall(r"! -name (\S+)", prune_bin[0]))
        ctest = [c for c in commands if c.startswith("ctest ")]
        self.assertEqual(len(ctest), 1, "the unit tests run before the build tree is deleted")
        self.assertLess(commands.index(ctest[0]), commands.index(prune_top[0]))
        copied = 0
        for args in self.final.all("COPY"):
            source_stage, sources, _ = copy_sources(args)
            for source in sources if source_stage else []:
                rel = source[len("/src/build/"):].split("/")
                self.assertIn(rel[0], kept_top, source + " is deleted before the layer is made")
                if rel[0] == "bin":
                    self.assertIn(rel[1], kept_bin, source + " is deleted before the layer")
                copied += 1
        self.assertGreaterEqual(copied, 4)
        self.assertEqual(kept_bin, {"parallelrun", "parallelrun-operator",
                                    "parallelrun-native-host"})

    def test_build_stage_installs_no_container_tools(self):
        # scripts/install-tools.sh holds them; the image build must not run it.
        self.assertNotIn("install-tools", read("Dockerfile"))
        packages = read("scripts/install-deps.sh").split("packages=(", 1)[1].split(")", 1)[0]
        for tool in ("podman", "runc", "debootstrap", "helm", "kubectl", "npm", "nodejs"):
            self.assertNotRegex(packages, r"(^|\s)%s(\s|$)" % tool)

    def test_ci_builds_the_image_with_the_hosts_paths_before_the_tests(self):
        ci = run_lines("scripts/test.sh")
        order = [ci.index(c) for c in ("bash scripts/install-tools.sh",
                                       "bash scripts/build.sh default",
                                       "bash scripts/build-image.sh",
                                       "ctest --preset default")]
        self.assertEqual(order, sorted(order), "scripts/test.sh: " + " / ".join(ci))
        # The build stage compiles in ${SRC}; build-image.sh sets it to the checkout, so the
        # ccache it lends the build sees the host's compile commands. Both stages agree on it.
        self.assertEqual(self.build.args.get("SRC"), "/src")
        self.assertEqual(self.final.args.get("SRC"), "/src")
        self.assertEqual(self.build.workdir, "/src")
        # ccache keys include the locale: the build stage's is the one CI builds with.
        self.assertIn("LANG=C.UTF-8", self.build.all("ENV"))
        self.assertIn("export LANG=C.UTF-8", ci)
        self.assertLess(ci.index("export LANG=C.UTF-8"), ci.index("bash scripts/build.sh default"))
        script = read("scripts/build-image.sh")
        self.assertIn('--build-arg "SRC=$PWD"', script)
        self.assertIn('--build-arg "VERSION=$version"', script)

    def test_every_copied_source_exists_and_is_not_ignored(self):
        patterns = dockerignore_patterns()
        for stage in self.stages:
            for args in stage.all("COPY"):
                source_stage, sources, _ = copy_sources(args)
                if source_stage:
                    continue
                for source in sources:
                    with self.subTest(copy=source):
                        if source == ".":
                            continue
                        self.assertTrue(os.path.exists(os.path.join(REPO, source)), source)
                        self.assertFalse(ignored(source, patterns), source + " is .dockerignored")

    def test_every_copied_build_output_is_made_by_the_build(self):
        seen = 0
        for args in self.final.all("COPY"):
            source_stage, sources, _ = copy_sources(args)
            if not source_stage:
                continue
            self.assertEqual(source_stage, "build")
            prefix = os.path.join(self.build.workdir, "build") + "/"
            for source in sources:
                with self.subTest(copy=source):
                    self.assertTrue(source.startswith(prefix), source)
                    seen += 1
                    built = os.path.join(BUILD_DIR, source[len(prefix):])
                    self.assertTrue(os.path.exists(built), "%s is not built (%s)" % (source, built))
        self.assertGreaterEqual(seen, 4)

    def test_final_stage_holds_the_binaries_and_the_python_host(self):
        copied = " ".join(self.final.all("COPY"))
        for binary in ("parallelrun", "parallelrun-operator", "parallelrun-native-host"):
            self.assertIn("/src/build/bin/%s " % binary, copied)
        # runtime/worker: the agent finds the host at <exe dir>/../share/parallelrun/python.
        self.assertIn("/src/build/share/parallelrun/python /usr/local/share/parallelrun/python",
                      copied)
        self.assertIn("share/parallelrun/python", read("runtime", "worker", "python_worker.cc"))
        packages = " ".join(self.final.all("RUN"))
        for package in ("python3", "python3-pandas"):
            self.assertRegex(packages, r"(^|\s)%s(\s|$)" % re.escape(package))

    def test_final_stage_runs_as_the_non_root_uid_the_chart_uses(self):
        users = self.final.all("USER")
        self.assertTrue(users, "the final stage sets no USER")
        uid = users[-1].split(":")[0]
        self.assertTrue(uid.isdigit() and int(uid) != 0, "USER %s is not a numeric non-root uid"
                        % users[-1])
        created = " ".join(self.final.all("RUN"))
        self.assertIn("useradd --uid %s" % uid, created)
        with open(os.path.join(REPO, "charts", "parallelrun", "values.yaml")) as f:
            values = yaml.safe_load(f)
        self.assertEqual(values["securityContext"]["runAsUser"], int(uid))
        self.assertEqual(values["podSecurityContext"]["runAsUser"], int(uid))
        # The build stage's commands run as root (the install script uses apt directly).
        self.assertEqual(self.build.all("USER"), [])

    def test_oci_labels(self):
        labels = " ".join(self.final.all("LABEL"))
        for key in ("title", "version", "source", "licenses"):
            self.assertIn("org.opencontainers.image.%s=" % key, labels)
        self.assertIn('org.opencontainers.image.version="${VERSION}"', labels)
        self.assertIn("VERSION=" + project_version(), self.final.all("ARG"))

    def test_dockerignore_keeps_build_folders_and_git_out(self):
        patterns = dockerignore_patterns()
        for path in ("build", "build-asan", "build-fuzz", ".git", "build/bin/parallelrun"):
            self.assertTrue(ignored(path, patterns), path)
        for path in ("scripts/install-deps.sh", "runtime/cmd/main.cc", "CMakePresets.json"):
            self.assertFalse(ignored(path, patterns), path)

    def test_runtime_packages_provide_every_library_the_binaries_load(self):
        install = [r for r in self.final.all("RUN") if "apt-get install" in r]
        self.assertEqual(len(install), 1)
        words = install[0].split("--no-install-recommends", 1)[1].split("&&")[0].split()
        listed = [w for w in words if not w.startswith("-")]
        available = dependency_closure(listed) | base_image_packages()
        for args in self.final.all("COPY"):
            source_stage, sources, _ = copy_sources(args)
            for source in sources if source_stage else []:
                path = os.path.join(BUILD_DIR, source[len("/src/build/"):])
                if os.path.isdir(path):
                    continue  # the Python host
                self.assertTrue(os.path.isfile(path), path + " is not built")
                for lib in shared_libraries(path):
                    with self.subTest(binary=os.path.basename(path), library=lib):
                        package = owning_package(lib)
                        if re.match(r"^lib(asan|ubsan)\d", package):
                            continue  # the sanitizer build's runtime, never in the image
                        self.assertTrue(package in available, "%s needs %s from %s, which the "
                                        "final stage does not install" % (
                                            os.path.basename(path), lib, package))


def shared_libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*\S+ => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
    return libs


def owning_package(path):
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.append(p[len("/usr"):])
        else:
            candidates.append("/usr" + p)
    for p in candidates:
        out = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":")[0].strip()
    raise AssertionError("no package owns " + path)


def package_depends(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}", package],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return set()
    deps = set()
    for clause in out.stdout.split(","):
        for alternative in clause.split("|"):
            name = alternative.strip().split(" ")[0].split(":")[0]
            if name:
                deps.add(name)
    return deps


def dependency_closure(packages):
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(package_depends(p) - seen)
    return seen


def base_image_packages():
    """What debian:bookworm-slim has: the Essential and Priority required packages."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential} ${Priority}\n"],
                         capture_output=True, text=True, check=True).stdout
    base = []
    for line in out.splitlines():
        fields = line.split()
        if "yes" in fields[1:] or "required" in fields[1:]:
            base.append(fields[0])
    return dependency_closure(base)


if __name__ == "__main__":
    unittest.main()
