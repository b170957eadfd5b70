# ruff: noqa: UP031  (%-formatting: an old python3 must parse this file to say why it is too old)
"""Start Ember's supervisor in a foreign image (ember_supervisor/inject.py): check what the image must
have, each failure ONE line on stderr and in the termination message, then run ember_supervisor.

Runs on the image's python3 before anything of Ember is imported, so it uses only the standard library
and syntax every Python 3 parses. The image's own packages come first: pydantic (compiled, per Python
ABI) and vLLM's own httpx/prometheus_client; `deps/` (pure Python) only fills what the image lacks.
"""

import importlib.util
import os
import sys

MYPY = False
if MYPY:  # annotations as comments: any python3 must parse this file
    from typing import NoReturn  # noqa: F401  (used in type comments)

LIB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # <tree>/lib
MIN_PYTHON = (3, 11)  # the supervisor's requires-python


def fail(line):
    # type: (str) -> NoReturn
    line = "ember: " + line
    sys.stderr.write(line + "\n")
    try:
        with open("/dev/termination-log", "w") as f:
            f.write(line + "\n")
    except OSError:
        pass
    sys.exit(127)


def check(argv):
    # type: (list[str]) -> None
    v = sys.version_info
    if v[:2] < MIN_PYTHON:
        fail(
            "this image's python3 is %d.%d; Ember's supervisor needs Python %d.%d or newer (%s)"
            % (v[0], v[1], MIN_PYTHON[0], MIN_PYTHON[1], sys.executable)
        )
    sys.path.append(os.path.join(LIB, "deps"))
    serving = not argv or argv[0] not in ("prestage", "--help", "-h", "--version")
    if serving and importlib.util.find_spec("vllm") is None:
        fail("this image has no vLLM for %s; Ember runs images that have vLLM and Python 3" % sys.executable)
    try:
        import pydantic
    except ImportError:
        fail("this image's Python has no pydantic (every vLLM installs it): %s" % sys.executable)
    if int(pydantic.VERSION.split(".")[0]) < 2:
        fail("this image's pydantic is %s; Ember's supervisor needs pydantic 2" % pydantic.VERSION)


def main():
    # type: () -> None
    argv = sys.argv[1:]
    check(argv)
    sys.argv[0] = "ember-supervisor"
    from ember_supervisor.main import main as supervisor

    supervisor(argv)


if __name__ == "__main__":
    main()
