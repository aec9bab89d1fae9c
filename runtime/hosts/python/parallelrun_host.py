"""parallelrun's Python host program: ``python3 <host_dir>/parallelrun_host.py <arguments...>``.

The host's code is parallelrun_host_impl.py (see there and README.md): imported, it is read from
its compiled form, where the file python3 is started with is compiled at every start (some
milliseconds of every worker's start). Importing this module gives the host's classes too.
"""

import sys

from parallelrun_host_impl import Host, MiniBatchContext, main  # noqa: F401 - the host's API

if __name__ == "__main__":
    sys.exit(main())
