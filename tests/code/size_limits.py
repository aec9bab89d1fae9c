#!/usr/bin/env python3
"""Size limits of the source tree (issue 13): no function over 80 lines in runtime/ and operator/,
no source file over 600 lines outside tests.

Known offenders live in size_allowlist.txt, each with its size when it was listed. The check fails
on an offender that is not listed, on a listed one that grew, and on a stale entry (the offender
was split or shrank under the limit: delete its line). A listed offender that shrank but is still
over the limit passes with a note; `--prune` rewrites the allowlist with the current, smaller
sizes and without stale entries (it never adds an entry). The limits hold only when the allowlist
is empty.

Functions are found by a brace-matching scan over the code with comments, string and character
literals blanked: a `{` whose preceding declarator ends in a parameter list (plus qualifiers,
a trailing return type or a constructor's initializer list) opens a function body; namespace,
class, struct, union, enum and extern blocks are looked into; any other brace (initializers,
lambdas outside functions) is skipped whole. A function's length runs from the line of its name
to its closing brace.

Usage: size_limits.py [--root DIR] [--allowlist FILE] [--prune] [--list]
"""
import argparse
import os
import re
import sys

FUNCTION_LIMIT = 80
FILE_LIMIT = 600
FUNCTION_ROOTS = ("runtime", "operator")
FILE_ROOTS = ("runtime", "operator", "bench", "examples", "scripts")
CXX_EXTENSIONS = (".cc", ".h", ".c", ".cpp", ".hpp")
FILE_EXTENSIONS = CXX_EXTENSIONS + (".py", ".sh")
SCOPE_KEYWORDS = re.compile(r"\b(namespace|class|struct|union|enum|extern)\b")
NOT_FUNCTIONS = {"if", "for", "while", "switch", "catch", "return", "sizeof", "decltype",
                 "alignas", "static_assert", "requires"}


def is_test_file(path):
    name = os.path.basename(path)
    return (re.search(r"_test(ing)?\.[a-z]+$", name) is not None or name.startswith("test_")
            or "/testdata/" in path)


def blank_comments_and_literals(text):
    """The text with comments, string and char literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            m = re.match(r'R"([^(\s]{0,16})\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:j]))
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * (j - i - 2) + c if j - i >= 2 else c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def function_name(header):
    """The declarator name if `header` (text before a `{`) opens a function body, else None."""
    h = re.sub(r"\s+", " ", header).strip()
    if not h or h.startswith("#"):
        return None
    # Drop a constructor's initializer list: ") : a_(x), b_{y}" -> ")".
    depth = 0
    close = -1
    for k, ch in enumerate(h):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                close = k
                rest = h[k + 1:].strip()
                if rest.startswith(":") and not rest.startswith("::"):
                    break
    if close < 0:
        return None
    tail = h[close + 1:].strip()
    if tail.startswith(":") and not h.endswith((")", "}")):
        return None  # a brace initializer inside a constructor's initializer list
    if tail and not tail.startswith(":"):
        if not re.fullmatch(r"((const|override|final|noexcept(\([^)]*\))?|mutable|volatile|&&|&|"
                            r"->\s*[\w:<>,\s\*&]+)\s*)*", tail):
            return None
    # The name: the identifier (qualified, or operator...) before the first top-level '('.
    depth = 0
    for k, ch in enumerate(h):
        if ch == "(" and depth == 0:
            before = h[:k].rstrip()
            m = re.search(r"((?:[A-Za-z_]\w*(?:<[^<>]*>)?::)*~?[A-Za-z_]\w*|operator\s*\S+)$",
                          before)
            if not m or "=" in before[: m.start()].replace("==", "").replace("operator=", ""):
                return None
            name = m.group(1)
            if name.split("::")[-1] in NOT_FUNCTIONS:
                return None
            if re.fullmatch(r"[A-Z][A-Z0-9_]+", name):  # TEST(Suite, Name) and other macros
                args = re.sub(r"\s+", "", h[k + 1:h.index(")", k)])
                name = f"{name}({args})"
            return name
        if ch in "(<":
            depth += 1 if ch == "(" else 0
        elif ch == ")":
            depth -= 1
    return None


def functions(text):
    """(name, first_line, last_line) of every function body in C++ source text."""
    code = blank_comments_and_literals(text)
    # Preprocessor lines never open bodies.
    code = re.sub(r"(?m)^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", lambda m: re.sub(r"[^\n]", " ", m.group()),
                  code)
    found = []
    stack = []  # "scope" | "func" | "other"
    header_start = 0
    opened = None  # (name, line, depth) of the function being read
    line_of = lambda pos: code.count("\n", 0, pos) + 1
    i = 0
    for i, ch in enumerate(code):
        inside = any(s != "scope" for s in stack)
        if ch == "{":
            if inside:
                stack.append("other")
                continue
            header = code[header_start:i]
            name = function_name(header)
            if name:
                m = re.search(re.escape(name.split("(")[0].split("::")[-1]), header)
                start = header_start + (m.start() if m else len(header))
                opened = (name, line_of(start))
                stack.append("func")
            elif SCOPE_KEYWORDS.search(header) and "(" not in header.split("{")[0].split("=")[0] \
                    or re.search(r'\bextern\s*""\s*$', header.strip()):
                stack.append("scope")
                header_start = i + 1
            else:
                stack.append("other")
        elif ch == "}":
            kind = stack.pop() if stack else "scope"
            if kind == "func" and opened:
                found.append((opened[0], opened[1], line_of(i)))
                opened = None
            if not any(s != "scope" for s in stack):
                if kind in ("func", "scope"):
                    header_start = i + 1
        elif ch == ";" and not inside:
            header_start = i + 1
    return found


def offenders(root):
    """{key: lines} of every function and file over its limit; key is 'function PATH:NAME' or
    'file PATH'."""
    out = {}
    for top in sorted(set(FUNCTION_ROOTS + FILE_ROOTS)):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "build")))
            for f in sorted(filenames):
                path = os.path.relpath(os.path.join(dirpath, f), root)
                if not f.endswith(FILE_EXTENSIONS):
                    continue
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
                in_file_roots = any(path.startswith(r + "/") for r in FILE_ROOTS)
                if in_file_roots and not is_test_file(path) and lines > FILE_LIMIT:
                    out[f"file {path}"] = lines
                if f.endswith(CXX_EXTENSIONS) and any(path.startswith(r + "/")
                                                      for r in FUNCTION_ROOTS):
                    seen = {}
                    for name, first, last in functions(text):
                        length = last - first + 1
                        seen[name] = seen.get(name, 0) + 1
                        key = name if seen[name] == 1 else f"{name}#{seen[name]}"
                        if length > FUNCTION_LIMIT:
                            out[f"function {path}:{key}"] = length
    return out


def read_allowlist(path):
    entries = {}
    with open(path, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"(function \S+|file \S+)\s+(\d+)", line)
            if not m:
                sys.exit(f"{path}:{n}: expected 'function PATH:NAME LINES' or 'file PATH LINES', "
                         f"got {raw.rstrip()!r}")
            entries[m.group(1)] = int(m.group(2))
    return entries


def write_allowlist(path, entries):
    with open(path, encoding="utf-8") as fh:
        head = [l for l in fh if l.startswith("#")]
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(head)
        for key in sorted(entries):
            fh.write(f"{key} {entries[key]}\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--allowlist", default=os.path.join(here, "size_allowlist.txt"))
    ap.add_argument("--prune", action="store_true", help="lower sizes, drop stale entries")
    ap.add_argument("--list", action="store_true", help="print every offender and exit")
    args = ap.parse_args()
    current = offenders(args.root)
    if args.list:
        for key in sorted(current):
            print(f"{key} {current[key]}")
        return 0
    allowed = read_allowlist(args.allowlist)
    new = {k: v for k, v in current.items() if k not in allowed}
    grew = {k: (allowed[k], v) for k, v in current.items() if k in allowed and v > allowed[k]}
    stale = sorted(k for k in allowed if k not in current)
    shrank = {k: (allowed[k], v) for k, v in current.items() if k in allowed and v < allowed[k]}
    if args.prune:
        write_allowlist(args.allowlist, {k: min(v, current[k]) for k, v in allowed.items()
                                         if k in current})
        print(f"pruned {args.allowlist}: {len(stale)} stale, {len(shrank)} lowered")
        return 0
    for k, (was, now) in sorted(shrank.items()):
        print(f"note: {k} shrank {was} -> {now} lines (run size_limits.py --prune)")
    failed = False
    if new:
        failed = True
        print(f"New offenders (functions over {FUNCTION_LIMIT} lines in {', '.join(FUNCTION_ROOTS)}"
              f"; files over {FILE_LIMIT} lines outside tests): split them.")
        for k in sorted(new):
            print(f"  {k} {new[k]}")
    if grew:
        failed = True
        print("Allowlisted offenders that grew (they may only shrink):")
        for k, (was, now) in sorted(grew.items()):
            print(f"  {k}: {was} -> {now} lines")
    if stale:
        failed = True
        print("Stale allowlist entries (now within the limit or gone): delete them, or run "
              "size_limits.py --prune:")
        for k in stale:
            print(f"  {k}")
    print(f"{len(current)} offenders, {len(allowed)} allowlisted; the limits hold when "
          f"{os.path.relpath(args.allowlist, args.root)} is empty.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
