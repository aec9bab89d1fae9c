"""End-to-end tests of the container runtime (`testcluster up --runtime container`).

Pods run as real OCI containers (podman + runc as root) from a tiny local image made here from
busybox-static (`podman import` of a root file system with /bin/busybox and its applet links,
cached by tag). Everything is checked through the real kubectl, from inside the containers:
users and groups, fsGroup, read-only root file system, capabilities, probes, restarts, exit codes
and termination messages, logs, pod IPs and Service names, missing images, OOM kills, and that no
container of the cluster is left behind.

Skipped only when podman is not installed. Run by CTest (cluster.e2e_containers) with
TESTCLUSTER_BIN pointing at the built binary.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import unittest

from e2e_pods_test import Cluster, wait_until

PODMAN = shutil.which("podman")
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ["sh", "echo", "cat", "id", "sleep", "touch", "stat", "grep", "head", "tr", "test",
           "httpd", "wget", "mkdir", "ls", "hostname", "true", "false", "printf", "seq"]


def podman(*args, check=True):
    out = subprocess.run([PODMAN] + list(args), capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError("podman %s failed: %s" % (" ".join(args), out.stderr))
    return out


def busybox_image():
    """localhost/testcluster-busybox:<hash of the busybox binary>, made once and then reused."""
    with open(BUSYBOX, "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:12]
    image = "localhost/testcluster-busybox:" + tag
    if podman("image", "exists", image, check=False).returncode == 0:
        return image
    root = tempfile.mkdtemp(prefix="busybox-rootfs-")
    try:
        for d in ("bin", "etc", "proc", "sys", "dev", "www"):
            os.makedirs(os.path.join(root, d))
        os.makedirs(os.path.join(root, "tmp"), mode=0o1777)
        os.chmod(os.path.join(root, "tmp"), 0o1777)
        shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
        for applet in APPLETS:
            os.symlink("busybox", os.path.join(root, "bin", applet))
        with open(os.path.join(root, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        with open(os.path.join(root, "etc", "group"), "w") as f:
            f.write("root:x:0:\nnogroup:x:65534:\n")
        with open(os.path.join(root, "www", "index.html"), "w") as f:
            f.write("hello from the web pod\n")
        with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run([PODMAN, "import",
                            "--change", 'CMD ["sh", "-c", "echo image default cmd in $PWD"]',
                            "--change", "WORKDIR /www", "--change", "ENV PATH=/bin", "-", image],
                           stdin=tar.stdout, check=True, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return image


def cluster_containers(state_dir):
    out = podman("ps", "-a", "-q", "--filter", "label=io.testcluster.state=" + state_dir)
    return out.stdout.split()


def cgroup_memory_limits():
    if os.path.exists("/sys/fs/cgroup/memory/cgroup.procs"):
        return True
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "memory" in f.read().split()
    except OSError:
        return False


@unittest.skipUnless(PODMAN, "podman is not installed")
class ContainerRuntimeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.image = busybox_image()
        cls.cluster = Cluster(runtime="container")
        cls.shared = os.path.join(cls.cluster.dir, "shared")
        os.makedirs(cls.shared)  # root-owned 0755: a hostPath the pods' users cannot write

    @classmethod
    def tearDownClass(cls):
        state = cls.cluster.dir
        cls.cluster.down()
        # `down` leaves no container of this cluster behind.
        assert cluster_containers(state) == [], cluster_containers(state)

    def k(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def apply(self, manifest):
        short = self.image[len("localhost/"):]  # resolved to localhost/ by the local lookup
        manifest = textwrap.dedent(manifest).replace("SHORTIMAGE", short)
        return self.k("apply", "-f", "-", input=manifest.replace("IMAGE", self.image))

    def pod(self, name):
        return json.loads(self.k("get", "pod", name, "-o", "json").stdout)

    def container_status(self, name):
        statuses = self.pod(name).get("status", {}).get("containerStatuses") or [{}]
        return statuses[0]

    def wait_phase(self, name, phase, timeout=60):
        wait_until(lambda: self.pod(name).get("status", {}).get("phase") == phase, timeout,
                   "pod %s %s (status %s)" % (name, phase, self.pod(name).get("status")))

    def wait_waiting_reason(self, name, reason, timeout=30):
        return wait_until(
            lambda: self.container_status(name).get("state", {}).get("waiting", {}).get("reason")
            == reason and self.container_status(name)["state"]["waiting"], timeout,
            "pod %s waiting %s" % (name, reason))

    def test_security_context_is_seen_from_inside_the_container(self):
        self.apply("""
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: settings}
            data: {mode: fast}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: secure}
            spec:
              restartPolicy: Never
              securityContext: {runAsUser: 10001, runAsGroup: 10001, fsGroup: 2000,
                                runAsNonRoot: true}
              volumes:
              - {name: data, emptyDir: {}}
              - {name: cfg, configMap: {name: settings}}
              - {name: host, hostPath: {path: %s}}
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c]
                args:
                - |
                  id
                  touch /rootfs-file 2>/dev/null || echo root fs read-only
                  echo x > /data/f && stat -c 'data %%g %%A' /data && stat -c 'file %%g' /data/f
                  stat -Lc 'cfg %%g' /cfg/mode
                  touch /host/f 2>/dev/null || echo hostPath not writable
                  grep -E '^(NoNewPrivs|CapEff)' /proc/self/status
                securityContext:
                  readOnlyRootFilesystem: true
                  allowPrivilegeEscalation: false
                  capabilities: {drop: [ALL]}
                volumeMounts:
                - {name: data, mountPath: /data}
                - {name: cfg, mountPath: /cfg}
                - {name: host, mountPath: /host}
            """ % self.shared)
        self.wait_phase("secure", "Succeeded")
        lines = self.k("logs", "secure").stdout.splitlines()
        self.assertEqual("uid=10001 gid=10001 groups=2000,10001", lines[0])
        self.assertIn("root fs read-only", lines)
        self.assertIn("data 2000 drwxrwsrwx", lines)  # emptyDir: fsGroup + setgid
        self.assertIn("file 2000", lines)                # new files inherit the group
        self.assertIn("cfg 2000", lines)
        self.assertIn("hostPath not writable", lines)    # fsGroup never applies to hostPath
        self.assertIn("NoNewPrivs:\t1", lines)
        self.assertIn("CapEff:\t0000000000000000", lines)
        self.assertFalse(os.path.exists(os.path.join(self.shared, "f")))

    def test_run_as_non_root_with_a_root_image_is_refused(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: rootimage}
            spec:
              securityContext: {runAsNonRoot: true}
              containers:
              - {name: main, image: IMAGE, command: [sleep, "100"]}
            """)
        waiting = self.wait_waiting_reason("rootimage", "CreateContainerConfigError")
        self.assertIn("container has runAsNonRoot and image will run as root", waiting["message"])
        self.assertIn('(pod: "rootimage_default(', waiting["message"])

    def test_exit_code_termination_message_logs_and_image_defaults(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: fails}
            spec:
              restartPolicy: Never
              securityContext: {runAsUser: 10001}
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c, "echo line one; echo line two >&2; echo 'done: 3 items' > /dev/termination-log; exit 3"]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: fallback}
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c, "echo last words; exit 4"]
                terminationMessagePolicy: FallbackToLogsOnError
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: defaults}
            spec:
              restartPolicy: Never
              containers:
              - {name: main, image: SHORTIMAGE}
            """)
        for name in ("fails", "fallback"):
            self.wait_phase(name, "Failed")
        self.wait_phase("defaults", "Succeeded")
        self.assertEqual(self.k("logs", "fails").stdout, "line one\nline two\n")
        terminated = self.container_status("fails")["state"]["terminated"]
        self.assertEqual((terminated["exitCode"], terminated["reason"], terminated["message"]),
                         (3, "Error", "done: 3 items\n"))
        self.assertTrue(self.container_status("fails")["containerID"].startswith("podman://"))
        terminated = self.container_status("fallback")["state"]["terminated"]
        self.assertEqual((terminated["exitCode"], terminated["message"]), (4, "last words\n"))
        # No command: the image's CMD, in the image's WORKDIR (image named by its short name).
        self.assertEqual(self.k("logs", "defaults").stdout, "image default cmd in /www\n")

    def test_missing_command_is_a_start_error(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: nocommand}
            spec:
              restartPolicy: Never
              containers:
              - {name: main, image: IMAGE, command: [no-such-command]}
            """)
        self.wait_phase("nocommand", "Failed")
        terminated = self.container_status("nocommand")["state"]["terminated"]
        self.assertEqual((terminated["exitCode"], terminated["reason"]), (128, "StartError"))
        self.assertIn('exec: "no-such-command": executable file not found', terminated["message"])
        self.assertEqual(self.k("logs", "nocommand").stdout, "")

    def test_readiness_gates_ready_and_service_and_pod_ip_reach_it(self):
        self.apply("""
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec:
              selector: {app: web}
              ports: [{port: 8080}]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: web, labels: {app: web}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: IMAGE
                env:
                - name: POD_IP
                  valueFrom: {fieldRef: {fieldPath: status.podIP}}
                command: [sh, -c, "sleep 2; exec httpd -f -p $(POD_IP):8080 -h /www"]
                ports: [{name: http, containerPort: 8080}]
                readinessProbe:
                  httpGet: {path: /index.html, port: http}
                  periodSeconds: 1
            """)
        wait_until(lambda: self.container_status("web").get("state", {}).get("running"), 30,
                   "web running")
        self.assertFalse(self.container_status("web")["ready"])  # httpd starts after 2 s
        self.k("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
        web_ip = self.pod("web")["status"]["podIP"]
        self.assertTrue(web_ip.startswith("127.") and web_ip != "127.0.0.1", web_ip)
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: client}
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c, "grep -w web /etc/hosts | grep -q %s && wget -qO- http://web:8080/index.html && wget -qO- http://%s:8080/index.html"]
            """ % (web_ip, web_ip))
        self.wait_phase("client", "Succeeded")
        self.assertEqual(self.k("logs", "client").stdout, "hello from the web pod\n" * 2)

    def test_liveness_failure_restarts_the_container(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: unhealthy}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c, "echo started; sleep 1000"]
                livenessProbe:
                  exec: {command: [test, -e, /tmp/healthy]}
                  periodSeconds: 1
                  failureThreshold: 2
            """)
        wait_until(lambda: self.container_status("unhealthy").get("restartCount", 0) >= 1, 60,
                   "a restart after failed liveness probes")
        status = self.container_status("unhealthy")
        self.assertEqual(status["lastState"]["terminated"]["exitCode"], 137)
        events = json.loads(self.k("get", "events", "--field-selector",
                                   "involvedObject.name=unhealthy", "-o", "json").stdout)["items"]
        messages = [e["message"] for e in events]
        self.assertIn("Container main failed liveness probe, will be restarted", messages)
        self.assertTrue(any(m.startswith("Liveness probe failed") for m in messages), messages)
        self.assertEqual(self.k("logs", "unhealthy", "--previous").stdout, "started\n")

    def test_missing_image_backs_off_and_is_never_pulled(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: noimage}
            spec:
              containers:
              - {name: main, image: "testcluster-no-such-image:1", command: [true]}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: neverpull}
            spec:
              containers:
              - {name: main, image: "testcluster-no-such-image:1", imagePullPolicy: Never}
            """)
        self.wait_waiting_reason("noimage", "ErrImagePull", timeout=20)
        waiting = self.wait_waiting_reason("noimage", "ImagePullBackOff", timeout=20)
        self.assertIn("testcluster-no-such-image:1", waiting["message"])
        waiting = self.wait_waiting_reason("neverpull", "ErrImageNeverPull", timeout=20)
        self.assertEqual(waiting["message"], 'Container image "testcluster-no-such-image:1" is '
                                             'not present with pull policy of Never')
        self.assertEqual(self.pod("noimage")["status"]["phase"], "Pending")

    @unittest.skipUnless(cgroup_memory_limits(), "no cgroup memory controller to limit memory")
    def test_memory_limit_gives_oom_killed(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: hungry}
            spec:
              restartPolicy: Never
              containers:
              - name: main
                image: IMAGE
                command: [sh, -c, "x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived"]
                resources:
                  limits: {memory: 24Mi}
            """)
        self.wait_phase("hungry", "Failed")
        terminated = self.container_status("hungry")["state"]["terminated"]
        self.assertEqual((terminated["exitCode"], terminated["reason"]), (137, "OOMKilled"))

    def test_deleted_pod_leaves_no_container(self):
        self.apply("""
            apiVersion: v1
            kind: Pod
            metadata: {name: doomed}
            spec:
              terminationGracePeriodSeconds: 5
              containers:
              - {name: main, image: IMAGE, command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]}
            """)
        self.k("wait", "--for=condition=Ready", "pod/doomed", "--timeout=60s")
        uid = self.pod("doomed")["metadata"]["uid"]
        wait_until(lambda: podman("ps", "-q", "--filter", "label=io.kubernetes.pod.uid=" + uid)
                   .stdout.split(), 30, "the running container")
        self.k("delete", "pod", "doomed", "--timeout=30s")  # SIGTERM is handled: exits at once
        wait_until(lambda: not podman("ps", "-a", "-q", "--filter",
                                      "label=io.kubernetes.pod.uid=" + uid).stdout.split(),
                   30, "the container of the deleted pod to be removed")


if __name__ == "__main__":
    unittest.main()
