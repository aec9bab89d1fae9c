"""parallelrun's Python host: runs one entry script for the agent (protocol in README.md).

Started by the agent as ``python3 <host_dir>/parallelrun_host.py <arguments...>`` with the control
pipes and the job's folders in ``PARALLELRUN_*`` variables; that file only imports this module and
calls main() (a program's own file is compiled at every start, an imported module's is read
compiled from __pycache__, which the build makes). It imports the entry script, calls ``init()``,
then answers one request line with one reply line until told to shut down.

The per-mini-batch path is kept lean: no imports, no file-system checks beyond what the request
needs, compact JSON. So is the start, which every worker pays before its first mini-batch: what a
file input with list results never needs is imported when first needed (pandas and the schemas for
tabular inputs, traceback for an error, inspect for a signature that is not a plain function's),
and `logging` is configured the moment something imports it (_RootLoggerOnImport).
"""

import json
import os
import resource
import sys
import time

_MAX_DETAIL = 64 * 1024  # longest traceback sent back in a reply (the error log gets all of it)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _utc_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def _cpu_now():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _clean(text):
    # Lone surrogates (from undecodable file names) would make the reply invalid JSON for the
    # agent's parser: turn them into visible escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _one_line(exc):
    msg = str(exc).strip()
    first = msg.splitlines()[0] if msg else ""
    if len(first) > 1000:
        first = first[:1000] + "..."
    name = type(exc).__name__
    return _clean(name + ": " + first if first else name)


def _user_traceback(exc):
    """The traceback without the host's own frames and importlib's machinery."""
    try:
        import traceback
    except ImportError:  # the script emptied sys.path before anything imported traceback
        return _clean("%s (no traceback: the traceback module cannot be imported)\n" % _one_line(exc))
    host_file = os.path.abspath(__file__)
    te = traceback.TracebackException.from_exception(exc)
    frames = [f for f in te.stack
              if f.filename != host_file and not f.filename.startswith("<frozen importlib")]
    te.stack = traceback.StackSummary.from_list(frames)
    return _clean("".join(te.format()))


def _truncate(text):
    if len(text) <= _MAX_DETAIL:
        return text
    head = 8 * 1024
    tail = _MAX_DETAIL - head
    omitted = len(text) - head - tail
    return text[:head] + "\n... (%d characters omitted) ...\n" % omitted + text[-tail:]


def _encode_rows(text):
    try:
        # File paths that were not valid UTF-8 come back as the bytes they were.
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


_RUN_SIGNATURES = ("run(mini_batch) or run(mini_batch, mini_batch_context) (Azure ML's two "
                   "forms; further parameters need defaults)")


def _key_values(req, batch):
    """partition_key_value: a dict in partitionKeys order. File inputs: the captured strings.
    Tabular: each key's value as the mini-batch's DataFrame holds it (its dtype: 3, not "3"),
    converted to a plain Python value."""
    pairs = req.get("partition_key_value") or []
    if isinstance(pairs, dict):
        return dict(pairs)
    values = {}
    columns = getattr(batch, "columns", None)
    for key, text in pairs:
        column = key
        if columns is not None and key not in columns and key.isdigit():
            column = int(key)  # no header: pandas names the columns 0, 1, ...
        if columns is not None and column in columns and len(batch):
            value = batch[column].iloc[0]
            values[key] = value.item() if hasattr(value, "item") else value
        else:
            values[key] = text
    return values


class MiniBatchContext:
    """The second argument of a two-parameter ``run(mini_batch, mini_batch_context)``, as in
    Azure ML: which input the mini-batch comes from, its index in the plan and its partition."""

    __slots__ = ("partition_key_value", "dataset", "minibatch_index")

    def __init__(self, partition_key_value, dataset, minibatch_index):
        self.partition_key_value = partition_key_value
        self.dataset = dataset
        self.minibatch_index = minibatch_index

    def __repr__(self):
        return "MiniBatchContext(partition_key_value=%r, dataset=%r, minibatch_index=%r)" % (
            self.partition_key_value, self.dataset, self.minibatch_index)


# What the host imported at its start before it imported them when first needed (logging, the
# schemas, traceback, and what they import): a script of one of these names gets the module name
# parallelrun_entry_script, as then, so that it does not take their place in sys.modules.
_LATER_MODULES = frozenset((
    "logging", "traceback", "linecache", "tokenize", "token", "textwrap", "weakref",
    "_weakrefset", "string", "_string", "threading", "atexit", "hashlib", "_hashlib", "_blake2", "errno",
    "fcntl", "warnings", "parallelrun_schemas", "parallelrun_tables"))

_FUNCTION = type(_utc_now)
_CO_VARARGS = 0x04  # inspect.CO_VARARGS


def _plain_parameters(fn):
    """(positional, required positional, *args?, a required keyword-only?) of a plain Python
    function, read from its code object as inspect.signature would; None for any other callable
    (a builtin, a class, a partial, a decorated function that names its original in __wrapped__),
    which inspect then judges. Importing inspect costs every worker's start some milliseconds."""
    if type(fn) is not _FUNCTION or fn.__dict__.keys() & {"__wrapped__", "__signature__",
                                                          "_partialmethod"}:
        return None
    code = fn.__code__
    positional = code.co_argcount
    defaults = len(fn.__defaults__ or ())
    if defaults > positional:
        return None
    kwonly = code.co_varnames[positional:positional + code.co_kwonlyargcount]
    kwdefaults = fn.__kwdefaults__ or {}
    return (positional, positional - defaults, bool(code.co_flags & _CO_VARARGS),
            any(name not in kwdefaults for name in kwonly))


def _signature_text(fn, name):
    import inspect
    try:
        return name + str(inspect.signature(fn))
    except (TypeError, ValueError):
        return name + "(...)"


def _check_init(fn, script):
    """None if init() can be called without arguments, else the error for init_failed."""
    plain = _plain_parameters(fn)
    if plain is not None:
        callable_bare = plain[1] == 0 and not plain[3]
    else:
        import inspect
        try:
            inspect.signature(fn).bind()
            callable_bare = True
        except TypeError:
            callable_bare = False
        except ValueError:
            callable_bare = True  # no signature to inspect (a builtin): let the call decide
    if not callable_bare:
        return ("TypeError: %s: %s cannot be called as init(); the supported signature is "
                "init() (parameters need defaults)" % (script, _signature_text(fn, "init")))
    return None


def _run_arity(fn, script):
    """(1 or 2, None): how run() is called; (None, error) if neither form can call it.

    run() is called with the mini-batch context when it has a second positional parameter."""
    plain = _plain_parameters(fn)
    if plain is not None:
        positional, required, varargs, kwonly_required = plain
        arity = 2 if positional >= 2 else 1
        fits = (arity <= positional or varargs) and required <= arity and not kwonly_required
    else:
        import inspect
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return 1, None  # no signature to inspect: the one-argument form
        arity = 2 if sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                         for p in sig.parameters.values()) >= 2 else 1
        try:
            sig.bind(*([None] * arity))
            fits = True
        except TypeError:
            fits = False
    if not fits:
        return None, ("TypeError: %s: %s cannot be called; the supported signatures are %s"
                      % (script, _signature_text(fn, "run"), _RUN_SIGNATURES))
    return arity, None


class _RootLoggerOnImport:
    """Points the root logger at the worker's stdout log the moment the `logging` module has been
    imported, by the entry script or anything it imports, before the importer gets it back: what
    `logging.basicConfig` at the host's start gave, without every worker paying for importing
    `logging` (a third of a bare host's imports) when its script never logs.

    A finder at the front of sys.meta_path: for "logging" it finds the module's spec with the other
    finders and has the spec's loader call `configure(module)` right after executing the module,
    then leaves sys.meta_path (a spec only looked up, importlib.util.find_spec, keeps it there). A
    loader that cannot be hooked that way (none of CPython's) has logging configured when the host
    next has control: settle(), after the script's import and init()."""

    def __init__(self, configure):
        self.configure = configure
        self.done = False

    def install(self):
        if "logging" in sys.modules:  # imported already (e.g. by a .pth file)
            self.settle()
        else:
            sys.meta_path.insert(0, self)

    def settle(self):
        """Configures logging if it was imported and is not yet; leaves sys.meta_path then."""
        if not self.done and "logging" in sys.modules:
            self._configured(sys.modules["logging"])

    def _configured(self, logging):
        self.done = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.configure(logging)

    def find_spec(self, name, path=None, target=None):
        if name != "logging" or self.done:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None or isinstance(loader, type):
            return spec  # a class as loader (frozen, builtin) is shared: settle() configures

        def exec_and_configure(module):
            if getattr(module, "__name__", None) != "logging" or self.done:
                return exec_module(module)  # another module through a shared loader
            try:
                del loader.exec_module
            except AttributeError:
                pass
            exec_module(module)
            self._configured(module)
            return None

        try:
            loader.exec_module = exec_and_configure
        except (AttributeError, TypeError):
            pass  # settle() configures
        return spec


class Host:
    def __init__(self, env):
        self.ctl_in = int(env["PARALLELRUN_CONTROL_IN_FD"])
        self.ctl_out = int(env["PARALLELRUN_CONTROL_OUT_FD"])
        self.entry_script = env["PARALLELRUN_ENTRY_SCRIPT"]
        self.node = env.get("PARALLELRUN_NODE", "127.0.0.1")
        self.process = env.get("PARALLELRUN_PROCESS", "process000")
        log_dir = env.get("PARALLELRUN_LOG_DIR", "logs")
        self.error_log = os.path.join(log_dir, "user", "error", self.node, self.process + ".txt")
        self.input_type = env.get("PARALLELRUN_INPUT_TYPE", "file")
        self.append_row_header = env.get("PARALLELRUN_APPEND_ROW_HEADER", "0") == "1"
        # "agent": the agent fsyncs part files itself, several per report (group commit).
        self.sync_parts = env.get("PARALLELRUN_PART_SYNC", "") != "agent"
        self.root_logger = None  # a _RootLoggerOnImport (main())
        self.module = None
        self.run_fn = None
        self.run_arity = 1
        self.pd = None
        self.known_dirs = set()
        self.output_dir = env.get("PARALLELRUN_OUTPUT_DIR")
        self.tables = None  # parallelrun_tables.TableReader, made for the first tabular request
        self.column_types = json.loads(env.get("PARALLELRUN_COLUMN_TYPES") or "{}")

    # ---- control pipe ----

    def send(self, obj):
        data = (_dumps(obj) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self.ctl_out, view)
            view = view[n:]

    # ---- logs ----

    def append_error_log(self, header, text):
        try:
            os.makedirs(os.path.dirname(self.error_log), exist_ok=True)
            with open(self.error_log, "a", encoding="utf-8", errors="backslashreplace") as f:
                f.write("%s %s\n%s" % (_utc_now(), header, text))
                if text and not text.endswith("\n"):
                    f.write("\n")
        except OSError as e:
            sys.stderr.write("parallelrun: cannot write %s: %s\n" % (self.error_log, e))

    # ---- start-up ----

    def load(self):
        """Imports the entry script and runs init(). Returns None, (error, detail), or
        (error, detail, True) when no other start can succeed (an uncallable signature)."""
        import importlib.util

        script = self.entry_script
        script_dir = os.path.dirname(script)
        # sys.path[0] is the host's folder; the script's own folder takes its place so the
        # script's neighbours win over anything of ours.
        sys.path[0] = script_dir
        name = os.path.splitext(os.path.basename(script))[0]
        if name in sys.modules or name in _LATER_MODULES:
            # e.g. a script called json.py must not replace the host's json
            name = "parallelrun_entry_script"
        try:
            if self.input_type == "tabular":
                import pandas
                self.pd = pandas
            spec = importlib.util.spec_from_file_location(name, script)
            if spec is None:
                return ("ImportError: cannot load %s as a Python module" % script, "")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            run_fn = getattr(module, "run", None)
            if not callable(run_fn):
                return ("AttributeError: entry script %s defines no run(mini_batch) function"
                        % script, "")
            arity, error = _run_arity(run_fn, script)
            if error is not None:
                return (error, "", True)
            init_fn = getattr(module, "init", None)
            if callable(init_fn):
                error = _check_init(init_fn, script)
                if error is not None:
                    return (error, "", True)
                init_fn()
        except BaseException as e:  # noqa: B902 - SystemExit in init() is an init failure too
            return (_one_line(e), _user_traceback(e))
        if self.root_logger is not None:
            self.root_logger.settle()
        self.module = module
        self.run_fn = run_fn
        self.run_arity = arity
        return None

    # ---- one mini-batch ----

    def read_table(self, req):
        """The DataFrame of a tabular request (parallelrun_tables, imported with pandas for the
        first one)."""
        if self.tables is None:
            if self.pd is None:
                import pandas
                self.pd = pandas
            import parallelrun_tables
            self.tables = parallelrun_tables.TableReader(
                self.pd, self.column_types, self.output_dir, self.node + "/" + self.process)
        return self.tables.read(req)

    def write_file(self, path, data, sync=True):
        folder = os.path.dirname(path)
        if folder and folder not in self.known_dirs:
            os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if folder and folder not in self.known_dirs:
            # The folder is synced after the first file the host creates in it (it may itself be
            # new). Later files rely on the file's fsync making its name durable too, which holds
            # on the journaling file systems and NFS that outputs live on (ext4, XFS: the fsync
            # commits the journal transaction holding the new entry) and halves the cost per
            # mini-batch compared with a folder fsync every time.
            dfd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self.known_dirs.add(folder)

    def write_part(self, part_file, result, is_frame):
        if is_frame:
            text = result.to_csv(sep=" ", index=False, header=False)
        elif result:
            text = "\n".join(map(str, result)) + "\n"
        else:
            text = ""
        self.write_file(part_file, _encode_rows(text), self.sync_parts)
        if is_frame and self.append_row_header:
            header = result.head(0).to_csv(sep=" ", index=False)
            self.write_file(part_file + ".header", _encode_rows(header), self.sync_parts)

    def run(self, req):
        """The result event of one request, without its CPU times (serve adds them)."""
        mb = req.get("mini_batch_id", -1)
        attempt = req.get("attempt", 0)
        stage = "reading the mini-batch"
        run_s = 0.0
        t0 = None
        items = 0
        try:
            if req.get("input_type", self.input_type) == "tabular":
                batch = self.read_table(req)
            else:
                batch = req["files"]
            items = len(batch)
            stage = "run()"
            if items == 0:
                # An empty mini-batch is not worth a call: its result is empty.
                result = batch
            else:
                t0 = time.perf_counter()
                if self.run_arity == 2:
                    context = MiniBatchContext(_key_values(req, batch),
                                               req.get("input_name", ""), mb)
                    result = self.run_fn(batch, context)
                else:
                    result = self.run_fn(batch)
                run_s = time.perf_counter() - t0
            pd = self.pd or sys.modules.get("pandas")
            is_frame = pd is not None and isinstance(result, pd.DataFrame)
            if not is_frame and not isinstance(result, (list, tuple)):
                error = ("run() returned %s; expected a list, tuple or pandas DataFrame"
                         % type(result).__name__)
                self.append_error_log(
                    "mini-batch %s attempt %s: RUN_WRONG_TYPE" % (mb, attempt), error)
                return {"event": "result", "status": "RUN_WRONG_TYPE", "items": items,
                        "succeeded": 0, "failed": items, "run_s": round(run_s, 6), "error": error}
            part_file = req.get("part_file")
            if part_file:
                stage = "writing the part file " + part_file
                self.write_part(part_file, result, is_frame)
        except BaseException as e:  # noqa: B902 - sys.exit() inside run() fails the attempt only
            if t0 is not None and run_s == 0.0:
                run_s = time.perf_counter() - t0
            detail = _user_traceback(e)
            self.append_error_log(
                "mini-batch %s attempt %s: RUN_EXCEPTION in %s" % (mb, attempt, stage), detail)
            error = _one_line(e)
            if stage != "run()":
                error = stage + ": " + error
            return {"event": "result", "status": "RUN_EXCEPTION", "items": items,
                    "succeeded": 0, "failed": items, "run_s": round(run_s, 6), "error": error,
                    "detail": _truncate(detail)}
        succeeded = min(len(result), items)
        return {"event": "result", "status": "RUN_DONE", "items": items, "succeeded": succeeded,
                "failed": items - succeeded, "run_s": round(run_s, 6)}

    def shutdown(self):
        reply = {"event": "bye"}
        fn = getattr(self.module, "shutdown", None)
        if callable(fn):
            try:
                fn()
            except BaseException as e:  # noqa: B902
                detail = _user_traceback(e)
                self.append_error_log("shutdown(): exception", detail)
                reply["error"] = _one_line(e)
        return reply

    # ---- main loop ----

    def serve(self, cpu_total):
        """Answers requests until shutdown or EOF. `cpu_total`: the CPU time sent with ready.

        A run's cpu_s is the CPU time since the previous reply (parsing the request, reading the
        mini-batch, run(), writing the part, flushing the logs): one getrusage pair per request."""
        stdout, stderr = sys.stdout, sys.stderr
        readline = os.fdopen(self.ctl_in, "rb", buffering=1 << 16, closefd=False).readline
        send = self.send
        while True:
            line = readline()
            if not line:
                return 0  # the agent is gone
            try:
                req = json.loads(line)
                op = req["op"]
            except (ValueError, KeyError, TypeError) as e:
                stderr.write("parallelrun host: malformed request %r: %s\n" % (line[:200], e))
                stderr.flush()
                return 2
            if op == "run":
                reply = self.run(req)
                stdout.flush()
                stderr.flush()
                cpu_now = _cpu_now()
                reply["cpu_s"] = round(cpu_now - cpu_total, 6)
                reply["cpu_total_s"] = cpu_total = round(cpu_now, 6)
                send(reply)
            elif op == "shutdown":
                reply = self.shutdown()
                stdout.flush()
                stderr.flush()
                send(reply)
                return 0
            else:
                stderr.write("parallelrun host: unknown op %r\n" % (op,))
                stderr.flush()
                return 2


def main():
    env = os.environ
    host = Host(env)
    # Children of the user's code must not hold our control pipes (the agent would then miss
    # our exit) nor read the agent's terminal.
    os.set_inheritable(host.ctl_in, False)
    os.set_inheritable(host.ctl_out, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # stdout/stderr are log files: line buffering keeps `tail -f` current.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    import faulthandler
    faulthandler.enable()  # a crash in native code leaves the Python stack in the stderr log
    # The root logger writes to the stdout log at the job's level (as the original did); a script
    # that wants its own set-up calls logging.basicConfig(force=True). Done as logging is imported.
    stdout = sys.stdout
    level = env.get("PARALLELRUN_LOGGING_LEVEL", "INFO").upper()

    def configure(logging):
        logging.basicConfig(
            stream=stdout,
            level={"DEBUG": logging.DEBUG, "WARNING": logging.WARNING}.get(level, logging.INFO),
            format="%(asctime)s|%(levelname)s|%(name)s|%(message)s")

    host.root_logger = _RootLoggerOnImport(configure)
    host.root_logger.install()

    # The azureml stand-ins (Model.get_model_path, Run.get_context) come last, so that an
    # installed Azure ML SDK always wins.
    sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "azureml_compat"))
    sys.argv = [host.entry_script] + sys.argv[1:]
    failure = host.load()
    sys.stdout.flush()
    sys.stderr.flush()
    if failure is not None:
        error, detail = failure[0], failure[1]
        host.append_error_log("init(): INIT_FAILED", detail or error)
        reply = {"event": "init_failed", "error": error, "detail": _truncate(detail)}
        if len(failure) > 2 and failure[2]:
            reply["permanent"] = True  # no other start can succeed: the agent gives up at once
        host.send(reply)
        return 1
    cpu_total = round(_cpu_now(), 6)
    host.send({"event": "ready", "pid": os.getpid(), "cpu_total_s": cpu_total})
    return host.serve(cpu_total)

