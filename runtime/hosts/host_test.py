"""Unit tests of the Python host's start-up shortcuts (python/parallelrun_host_impl.py): the signature
checks that read a plain function's code object instead of importing inspect, the root logger
configured when `logging` is first imported, and the module names a script may not take.

Run: /usr/bin/python3 -m unittest -v host_test (from this folder; CTest: hosts.python_host).
Outside python/ so that it is not installed with the host."""

import functools
import inspect
import os
import subprocess
import sys
import textwrap
import unittest

HOST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python")
sys.path.insert(0, HOST_DIR)

import parallelrun_host_impl as parallelrun_host  # noqa: E402


def _reference_run_arity(fn):
    """The host's run() check as it was, with inspect.signature for every callable."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    arity = 2 if len(positional) >= 2 else 1
    try:
        sig.bind(*([None] * arity))
    except TypeError:
        return None
    return arity


def _reference_init_ok(fn):
    try:
        inspect.signature(fn).bind()
    except TypeError:
        return False
    except ValueError:
        pass
    return True


def _functions():
    """Callables of every shape a script may define as run() or init()."""
    ns = {}
    exec(textwrap.dedent("""
        def f0(): pass
        def f1(a): pass
        def f2(a, b): pass
        def f3(a, b, c): pass
        def f1d(a=1): pass
        def f2d(a, b=1): pass
        def f3d(a, b, c=1): pass
        def f3dd(a, b=1, c=2): pass
        def fva(*args): pass
        def f1va(a, *args): pass
        def f2va(a, b, *args): pass
        def fkw(**kw): pass
        def f1kw(a, **kw): pass
        def fko(a, *, k): pass
        def fkod(a, *, k=1): pass
        def fko2(a, b, *, k): pass
        def fpo(a, /): pass
        def fpo2(a, /, b): pass
        def fpod(a, /, b=1): pass
        def fall(a, /, b=1, *args, k=2, **kw): pass
        def fva_ko(*args, k): pass
        async def fasync(a): pass
        def fgen(a): yield a
        lam = lambda a, b=0: None
        class C:
            def method(self, a): pass
            def method2(self, a, b): pass
            @staticmethod
            def static(a, b): pass
            @classmethod
            def cls(klass, a): pass
            def __call__(self, a, b): pass
    """), ns)
    fns = {k: v for k, v in ns.items() if callable(v) and k != "C" and k != "__builtins__"}
    C = ns["C"]
    obj = C()
    fns.update({"bound": obj.method, "bound2": obj.method2, "static": C.static,
                "classmethod": C.cls, "instance": obj, "class": C, "builtin": len,
                "builtin_print": print, "partial": functools.partial(ns["f3"], 1),
                "partial2": functools.partial(ns["f3"], 1, 2)})

    @functools.wraps(ns["f2"])
    def wrapped(*args, **kwargs):
        pass
    fns["wrapped"] = wrapped
    with_sig = ns["f3"].__class__(ns["f3"].__code__, {})  # a copy, to carry __signature__
    with_sig.__signature__ = inspect.signature(ns["f1"])
    fns["with_signature"] = with_sig
    changed = ns["f2"].__class__(ns["f2"].__code__, {})
    changed.__defaults__ = (5,)  # defaults set after the definition
    fns["late_defaults"] = changed
    return fns


class SignatureTest(unittest.TestCase):
    def test_run_check_agrees_with_inspect_for_every_shape(self):
        for name, fn in _functions().items():
            with self.subTest(name):
                arity, error = parallelrun_host._run_arity(fn, "s.py")
                self.assertEqual(arity, _reference_run_arity(fn))
                self.assertEqual(error is None, arity is not None)

    def test_init_check_agrees_with_inspect_for_every_shape(self):
        for name, fn in _functions().items():
            with self.subTest(name):
                error = parallelrun_host._check_init(fn, "s.py")
                self.assertEqual(error is None, _reference_init_ok(fn))

    def test_plain_functions_are_judged_without_inspect(self):
        fns = _functions()
        self.assertEqual(parallelrun_host._plain_parameters(fns["fall"]), (2, 1, True, False))
        self.assertEqual(parallelrun_host._plain_parameters(fns["fko"]), (1, 1, False, True))
        for name in ("wrapped", "with_signature", "partial", "bound", "builtin", "instance"):
            self.assertIsNone(parallelrun_host._plain_parameters(fns[name]), name)

    def test_errors_still_name_the_signature(self):
        fns = _functions()
        _, error = parallelrun_host._run_arity(fns["f3"], "s.py")
        self.assertIn("run(a, b, c) cannot be called", error)
        self.assertIn("init(a) cannot be called as init()",
                      parallelrun_host._check_init(fns["f1"], "s.py"))


def _python(code):
    """Runs `code` in a fresh /usr/bin/python3 that imports the host; its stdout."""
    prelude = ("import sys; sys.path.insert(0, %r); import parallelrun_host\n"
               "import parallelrun_host_impl as h\n" % HOST_DIR)
    out = subprocess.run(["/usr/bin/python3", "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return out.stdout


class RootLoggerOnImportTest(unittest.TestCase):
    def test_the_host_imports_neither_logging_nor_traceback_nor_inspect(self):
        out = _python("print(sorted({'logging', 'traceback', 'inspect', 'hashlib',"
                      " 'parallelrun_schemas', 'parallelrun_tables'} & set(sys.modules)))")
        self.assertEqual(out.strip(), "[]")

    def test_configures_once_right_after_the_first_import(self):
        out = _python("""
            calls = []
            def configure(logging):
                calls.append(logging.__name__)
                logging.basicConfig(stream=sys.stdout, format="%(levelname)s|%(message)s",
                                    level=logging.INFO)
            hook = h._RootLoggerOnImport(configure)
            hook.install()
            print("before", "logging" in sys.modules, calls)
            import logging.handlers  # the parent first: the hook runs for it
            logging.info("at once")
            print("hooked", calls, hook in sys.meta_path, "exec_module" in vars(logging.__loader__))
            import importlib
            importlib.reload(logging)
            hook.settle()
            print("after reload", calls)
        """)
        self.assertEqual(out.splitlines(), [
            "before False []",
            "INFO|at once",
            "hooked ['logging'] False False",
            "after reload ['logging']",
        ])

    def test_a_spec_only_looked_up_keeps_the_hook_for_the_import(self):
        out = _python("""
            import importlib.util
            calls = []
            hook = h._RootLoggerOnImport(lambda m: calls.append(m.__name__))
            hook.install()
            importlib.util.find_spec("logging")
            print(calls, hook in sys.meta_path)
            import logging
            print(calls, hook in sys.meta_path)
        """)
        self.assertEqual(out.splitlines(), ["[] True", "['logging'] False"])

    def test_settle_configures_a_logging_imported_past_the_hook(self):
        out = _python("""
            calls = []
            hook = h._RootLoggerOnImport(lambda m: calls.append(m.__name__))
            hook.install()
            sys.meta_path.remove(hook)  # as if its loader could not be hooked
            import logging
            sys.meta_path.insert(0, hook)
            hook.settle()
            hook.settle()
            print(calls, hook in sys.meta_path)
        """)
        self.assertEqual(out.strip(), "['logging'] False")

    def test_configures_at_install_when_logging_is_there_already(self):
        out = _python("""
            import logging
            calls = []
            hook = h._RootLoggerOnImport(lambda m: calls.append(m.__name__))
            hook.install()
            print(calls, hook in sys.meta_path)
        """)
        self.assertEqual(out.strip(), "['logging'] False")

    def test_a_script_may_not_take_the_name_of_a_module_the_host_imports_later(self):
        # What logging, traceback and the tables (schemas) import beyond the host: a script of such
        # a name would replace it in sys.modules.
        out = _python("""
            before = set(sys.modules)
            import logging, traceback, parallelrun_tables
            print(" ".join(sorted(m for m in set(sys.modules) - before if "." not in m)))
        """)
        later = set(out.split())
        self.assertTrue(later, out)
        self.assertLessEqual(later, parallelrun_host._LATER_MODULES)


if __name__ == "__main__":
    unittest.main()
