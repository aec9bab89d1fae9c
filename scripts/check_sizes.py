#!/usr/bin/env python3
"""Lists functions over 80 lines and files over 600 lines in the given folders (tests and test
support excepted: *_test.*, *_testing.h). Exit 1 when there is any.

A function is a definition that starts at column 0 (clang-format puts every function definition of
this tree there) and ends at the next line that is exactly "}".

    check_sizes.py runtime/coordinator [more folders...]
"""
import os
import re
import sys

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600
NOT_A_FUNCTION = re.compile(r'(namespace|class|struct|enum|union|extern|using|template|typedef)\b')


def offenders(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    if len(lines) - 1 > MAX_FILE_LINES:
        yield f'{path}: {len(lines) - 1} lines (at most {MAX_FILE_LINES})'
    candidate = start = None
    for i, line in enumerate(lines):
        if start is None:
            if candidate is None and re.match(r'[A-Za-z_~]', line) and not NOT_A_FUNCTION.match(line):
                candidate = i
            if candidate is not None:
                end = line.rstrip()
                if end.endswith(';') or end.endswith('}'):
                    candidate = None
                elif end.endswith('{'):
                    start, candidate = candidate, None
        elif line == '}':
            n = i - start + 1
            if n > MAX_FUNCTION_LINES:
                yield f'{path}:{start + 1}: a function of {n} lines (at most {MAX_FUNCTION_LINES})'
            start = None


def main(folders):
    found = []
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                if not name.endswith(('.cc', '.h')) or '_test.' in name or '_testing.' in name:
                    continue
                found += offenders(os.path.join(dirpath, name))
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit('usage: check_sizes.py FOLDER...')
    sys.exit(main(sys.argv[1:]))
