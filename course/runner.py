"""Execute lessons headless with nbclient and collect their quality gates."""
from __future__ import annotations

import contextlib
import copy
import os
import pathlib
import time
from dataclasses import dataclass, field

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from companion.gates import GATE_LINE
from course.notebooks import clean_outputs, write_notebook


@dataclass
class RunReport:
    name: str
    profile: str
    seconds: float
    ok: bool
    gates: list[dict] = field(default_factory=list)
    error: str = ""


@contextlib.contextmanager
def lesson_environment(profile: str, extra: dict | None = None):
    """Environment the kernel inherits: the profile, silent progress bars, any extras."""
    values = {"COURSE_PROFILE": profile, "TQDM_DISABLE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
              **(extra or {})}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def gates_of(nb) -> list[dict]:
    """Every ``GATE ...`` line printed by the notebook's cells, in order."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                found.extend(m.groupdict() for m in GATE_LINE.finditer(out.get("text", "")))
    return found


def execute(nb, cwd: pathlib.Path, profile: str, timeout: int = 900,
            allow_errors: bool = False, env: dict | None = None) -> tuple[object, str]:
    """Execute ``nb`` in a fresh kernel; return (executed notebook, error text or "")."""
    nb = copy.deepcopy(nb)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(cwd)}},
                            # the kernel's own start-up log lines are noise in a headless run
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    error = ""
    with lesson_environment(profile, env):
        try:
            client.execute()
        except CellExecutionError as exc:
            error = _short_error(str(exc))
        except (CellTimeoutError, DeadKernelError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return nb, error


def _short_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-6:])


def run_lesson(path: pathlib.Path, profile: str, out: pathlib.Path | None = None,
               inplace: bool = False, timeout: int = 900) -> RunReport:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    executed, error = execute(nb, path.parent, profile, timeout=timeout)
    seconds = time.perf_counter() - start
    report = RunReport(path.stem, profile, seconds, not error, gates_of(executed), error)
    if any(g["status"] == "FAIL" for g in report.gates):
        report.ok = False
    clean_outputs(executed)
    if out is not None:
        write_notebook(executed, out / path.name)
    if inplace and report.ok:
        # Never store a failed run (errors, partial outputs) in the lesson itself.
        write_notebook(executed, path)
    return report
