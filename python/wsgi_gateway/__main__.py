"""The ``wsgi-gateway`` command and ``python -m wsgi_gateway``."""

import os
import subprocess
import sys

from . import _gateway


def worker_command():
    """How a worker process starts: this Python, with the same interpreter options
    (``-X``, ``-W``, ``-E``, ...), running this package, as the supervisor did."""
    options = getattr(subprocess, "_args_from_interpreter_flags", list)()
    return [sys.executable, *options, "-m", "wsgi_gateway"]


def main():
    """Run the gateway with this process's command line and exit with its status."""
    status = _gateway.run(sys.argv[1:], worker_command())
    # As the cargo-built binary does, end without finalising the interpreter: a
    # worker's Python threads may still be parked in the gateway.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    main()
