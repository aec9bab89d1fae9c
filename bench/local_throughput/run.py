#!/usr/bin/python3
"""bench/local_throughput: parallelrun local mode against multiprocessing.Pool(2).map.

Every figure is measured side by side in one invocation, on the same interpreter
(/usr/bin/python3), 1 node x 2 processes:
  1. wall ratio parallelrun / Pool(2).map(chunksize=10) on each --items count of files x --cpu-ms
     of CPU, mini-batches of 10 (issue 14 target <= 1.05);
  2. worker utilisation with ~10 ms mini-batches (10 items x 1 ms; target >= 95 %), on
     --short-items items (default: the first --items count): the whole run's fixed cost (start-up,
     shut-down) weighs less on a longer run, so both sizes are worth printing;
  3. the whole-run CPU (start-up, planning and assembly included) of the `parallelrun agent` and
     `parallelrun coordinator` processes, read from /proc/<pid>/stat (utime + stime) while they
     run (they are zombies, still readable, until `parallelrun run` reaps them), divided by the
     number of mini-batches, per process (target <= 0.3 ms);
  4. the same with 1 ms items and mini-batches of 1 against Pool(2).map(chunksize=1): the floor
     of the runtime's cost per mini-batch.
With --baseline BIN every parallelrun figure is also measured with BIN (e.g. main's build) in the
same run, so before/after are side by side too. Prints ratios; no thresholds are enforced.

usage: bench/local_throughput/run.py [--items 4000,20000] [--cpu-ms 5] [--bin build/bin/parallelrun]
                                     [--baseline OTHER/bin/parallelrun] [--tiny-items 2000]
                                     [--skip-short] [--short-items N] [--repeat N]
With --repeat N each wall-ratio case runs N rounds of Pool then parallelrun (then the baseline),
alternated, and prints the ratio of the medians too: on a shared machine one round can be off by
10 % or more.
"""
import argparse
import csv
import datetime
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TICK = os.sysconf("SC_CLK_TCK")

WORK = """
import hashlib
def work(path, rounds):
    h = hashlib.sha256(open(path, 'rb').read())
    for _ in range(rounds):
        h = hashlib.sha256(h.digest())
    return h.hexdigest()[:16]
"""

ENTRY = WORK + """
import argparse
ROUNDS = 0
def init():
    global ROUNDS
    p = argparse.ArgumentParser(); p.add_argument('--rounds', type=int); a, _ = p.parse_known_args()
    ROUNDS = a.rounds
def run(mini_batch):
    return [work(p, ROUNDS) for p in mini_batch]
"""

namespace = {}
exec(WORK, namespace)
work = namespace["work"]


def _work_star(args):
    return work(*args)


def calibrate(path, cpu_ms):
    rounds = 1000
    while True:
        t = time.process_time()
        work(path, rounds)
        dt = time.process_time() - t
        if dt > 0.05:
            return max(1, int(rounds * (cpu_ms / 1000.0) / dt))
        rounds *= 2


def make_data(tmp, n):
    data = os.path.join(tmp, f"data-{n}")
    os.makedirs(data)
    for i in range(n):
        with open(os.path.join(data, f"{i:06d}.bin"), "wb") as f:
            f.write(i.to_bytes(8, "little"))
    return data, sorted(os.path.join(data, f) for f in os.listdir(data))


def make_job(tmp, data, rounds, mini_batch, name):
    code = os.path.join(tmp, "code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(code, "bench.py"), "w") as f:
        f.write(ENTRY)
    manifest = {"apiVersion": "parallelrun.io/v1alpha1", "kind": "ParallelRunJob",
                "metadata": {"name": name},
                "spec": {"entryScript": "bench.py", "sourceDirectory": {"path": "code/"},
                         "inputs": [{"name": "data", "type": "file",
                                     "source": {"path": os.path.relpath(data, tmp) + "/"}}],
                         "output": {"path": f"out-{name}/"},
                         "arguments": ["--rounds", str(rounds)],
                         "miniBatchSize": mini_batch, "nodeCount": 1, "processCountPerNode": 2,
                         "resourceMonitorInterval": 0}}
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        json.dump(manifest, f)
    return path


class ProcCpu:
    """Samples the utime + stime of the `parallelrun run` process's agent and coordinator children
    every 5 ms and keeps the last of each (a child that exited stays readable as a zombie until
    reaped, so the last sample is the whole run, less at most 5 ms). Each child's
    /proc/<pid>/stat is opened once and re-read with pread, and the children are listed again
    only every 100 ms, so the sampler takes little of the CPU the workers need."""

    def __init__(self, parent):
        self.parent = parent
        self.cpu = {}  # pid -> (role, user seconds, system seconds)
        self.files = {}  # pid -> (role, fd of /proc/<pid>/stat)
        self.seen = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _children(self):
        out = []
        try:
            for tid in os.listdir(f"/proc/{self.parent}/task"):
                with open(f"/proc/{self.parent}/task/{tid}/children") as f:
                    out += f.read().split()
        except OSError:
            pass
        return out

    def _discover(self):
        for pid in self._children():
            if pid in self.seen:
                continue
            self.seen.add(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
            except OSError:
                continue
            role = argv[1].decode() if len(argv) > 1 and argv[1] else None
            if role in ("agent", "coordinator"):
                self.files[pid] = (role, fd)
            else:
                os.close(fd)

    def _sample(self):
        for pid, (role, fd) in list(self.files.items()):
            try:
                fields = os.pread(fd, 4096, 0).decode().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                os.close(fd)  # reaped: its last sample stands
                del self.files[pid]
                continue
            self.cpu[pid] = (role, int(fields[11]) / TICK, int(fields[12]) / TICK)

    def _loop(self):
        next_discovery = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_discovery:
                self._discover()
                next_discovery = time.monotonic() + 0.1
            self._sample()
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        self.thread.join()
        for _, fd in self.files.values():
            os.close(fd)
        per_role = {}  # role -> [user seconds, system seconds]
        for role, user, system in self.cpu.values():
            acc = per_role.setdefault(role, [0.0, 0.0])
            acc[0] += user
            acc[1] += system
        return per_role


def run_parallelrun(binary, manifest):
    out_dir = os.path.join(os.path.dirname(manifest), "out-" + os.path.basename(manifest)[:-5])
    shutil.rmtree(out_dir, ignore_errors=True)
    t = time.monotonic()
    proc = subprocess.Popen([binary, "run", manifest], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = ProcCpu(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.monotonic() - t
    cpu = sampler.finish()
    if proc.returncode != 0:
        sys.exit(f"{binary} run failed ({proc.returncode}):\n{stdout}\n{stderr}")
    return wall, cpu, out_dir


def run_pool(files, rounds, chunksize):
    t = time.monotonic()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_work_star, [(p, rounds) for p in files], chunksize=chunksize)
    return time.monotonic() - t


def utilisation(out_dir, wall, workers):
    """The workers' time in run() over the whole run's wall time x workers, and over the span from
    the first mini-batch's start to the last one's end (what start-up and shut-down leave out)."""
    with open(os.path.join(out_dir, "logs", "sys", "job_report", "processed_mini-batches.csv")) as f:
        rows = list(csv.DictReader(f))
    run_s = sum(float(r["run_s"]) for r in rows)
    starts = [datetime.datetime.strptime(r["start_utc"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
              for r in rows]
    span = max(t + float(r["elapsed_s"]) for t, r in zip(starts, rows)) - min(starts)
    return run_s / (wall * workers), run_s / (span * workers)


def cpu_text(cpu, mini_batches):
    def one(role):
        user, system = cpu.get(role, [0.0, 0.0])
        ms = 1000 / mini_batches
        return f"{role} {(user + system) * ms:.3f} ms (user {user * ms:.3f} + sys {system * ms:.3f})"

    return ", ".join(one(role) for role in ("agent", "coordinator")) + " CPU per mini-batch"


def compare(label, binaries, manifest, pool_run, mini_batches, repeat):
    """`repeat` rounds, each one Pool run then one parallelrun run per binary (so that a change in
    the machine's load falls on all of them); prints each round's walls and ratios, then the ratio
    of the medians per binary."""
    walls = {name: [] for name, _ in binaries}
    pools = []
    for r in range(repeat):
        pools.append(pool_run())
        for name, binary in binaries:
            wall, cpu, _ = run_parallelrun(binary, manifest)
            walls[name].append(wall)
            print(f"  {label} [{name}] round {r + 1}: parallelrun {wall:.2f} s, Pool {pools[-1]:.2f} s, "
                  f"ratio {wall / pools[-1]:.3f}; {cpu_text(cpu, mini_batches)}", flush=True)
    if repeat > 1:
        pool = statistics.median(pools)
        for name, _ in binaries:
            med = statistics.median(walls[name])
            print(f"  {label} [{name}] median of {repeat}: parallelrun {med:.2f} s, Pool {pool:.2f} s, "
                  f"ratio {med / pool:.3f}", flush=True)


def short_case(binaries, data, tmp, rounds_1ms, items):
    """~10 ms mini-batches: worker utilisation and CPU per mini-batch."""
    manifest = make_job(tmp, data, rounds_1ms, 10, "short")
    print(f"~10 ms mini-batches ({items} items x 1 ms, mini-batches of 10):")
    for name, binary in binaries:
        wall, cpu, out_dir = run_parallelrun(binary, manifest)
        whole, span = utilisation(out_dir, wall, 2)
        print(f"  [{name}] {items // 10} mini-batches in {wall:.2f} s, worker utilisation "
              f"{whole * 100:.1f} % ({span * 100:.1f} % from the first mini-batch's start to the "
              f"last one's end); {cpu_text(cpu, items // 10)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default="4000,20000")
    ap.add_argument("--cpu-ms", type=float, default=5.0)
    ap.add_argument("--tiny-items", type=int, default=2000,
                    help="1 ms items, mini-batches of 1 (0: skip that case)")
    ap.add_argument("--skip-short", action="store_true", help="skip the ~10 ms mini-batches case")
    ap.add_argument("--short-items", type=int, default=0,
                    help="items of the ~10 ms mini-batches case (default: the first --items count)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin", "parallelrun"))
    ap.add_argument("--baseline", help="another parallelrun binary to measure side by side")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of Pool and parallelrun runs, alternated (medians are printed)")
    args = ap.parse_args()
    binaries = [("this", args.bin)] + ([("baseline", args.baseline)] if args.baseline else [])
    tmp = tempfile.mkdtemp(prefix="parallelrun-bench-")
    try:
        counts = [int(n) for n in args.items.split(",") if n]
        short_items = args.short_items or counts[0]
        datasets = {n: make_data(tmp, n)
                    for n in set(counts + [args.tiny_items, 0 if args.skip_short else short_items])
                    if n > 0}
        rounds = calibrate(datasets[counts[0]][1][0], args.cpu_ms)
        rounds_1ms = max(1, int(rounds / args.cpu_ms))
        print(f"local_throughput: 1 node x 2 processes, /usr/bin/python3, {rounds} rounds = "
              f"{args.cpu_ms:g} ms per item; targets: ratio <= 1.05, utilisation >= 95 %, "
              f"<= 0.3 ms CPU per mini-batch per process", flush=True)
        for n in counts:
            data, files = datasets[n]
            manifest = make_job(tmp, data, rounds, 10, f"items-{n}")
            print(f"{n} items x {args.cpu_ms:g} ms, mini-batches of 10 vs Pool.map(chunksize=10):")
            compare(f"{n} items", binaries, manifest, lambda: run_pool(files, rounds, 10), n // 10,
                    args.repeat)

        if not args.skip_short:
            short_case(binaries, datasets[short_items][0], tmp, rounds_1ms, short_items)

        if args.tiny_items <= 0:
            return
        data, files = datasets[args.tiny_items]
        manifest = make_job(tmp, data, rounds_1ms, 1, "tiny")
        print(f"{args.tiny_items} items x 1 ms, mini-batches of 1 vs Pool.map(chunksize=1):")
        compare("1 ms items", binaries, manifest, lambda: run_pool(files, rounds_1ms, 1),
                args.tiny_items, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
