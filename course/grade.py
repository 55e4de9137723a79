"""Grade submitted lesson notebooks with the exercise checkers.

Each submission is graded in a clean copy of the lesson's student release: only the student's
exercise cells (matched by their ``# EXERCISE name`` line) are taken from the submission, so an
edited check cell or lesson cell cannot change the grade. The copy is executed in a fresh kernel
with ``allow_errors`` (one broken exercise does not stop the rest) and every checker logs its
result. Grading runs the students' code: do it in a sandbox or container you trust.
"""
from __future__ import annotations

import csv
import json
import pathlib
import tempfile

import nbformat

from course.notebooks import Lesson, exercise_name, exercises, release_notebook
from course.runner import execute


def assemble(submission, lesson_nb):
    """The lesson's student release with the submission's exercise cells put in."""
    answers = {}
    for cell in submission.cells:
        if cell.cell_type == "code" and (name := exercise_name(cell.source)):
            answers[name] = cell.source
    graded = release_notebook(lesson_nb)
    for cell in graded.cells:
        if cell.cell_type == "code" and (name := exercise_name(cell.source)) in answers:
            cell.source = answers[name]
    return graded


def grade_submission(path: pathlib.Path, lesson: Lesson, profile: str = "smoke",
                     timeout: int = 900) -> list[dict]:
    """One row per exercise: ``exercise``, ``status``, ``passed``, ``total``."""
    lesson_nb = lesson.read()
    graded = assemble(nbformat.read(path, as_version=4), lesson_nb)
    with tempfile.TemporaryDirectory() as tmp:
        log = pathlib.Path(tmp) / "grades.jsonl"
        log.touch()
        execute(graded, lesson.path.parent, profile, timeout=timeout, allow_errors=True,
                env={"COURSE_GRADE_LOG": str(log), "COURSE_STRICT_CHECKS": "0"})
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    latest = {r["exercise"]: r for r in records}
    rows = []
    for name in exercises(lesson_nb):
        r = latest.get(name)
        rows.append({"submission": path.name, "exercise": name,
                     "status": r["status"] if r else "error (the check did not run)",
                     "passed": r["passed"] if r else 0, "total": r["total"] if r else 0})
    return rows


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["submission", "exercise", "status", "passed",
                                               "total"])
        writer.writeheader()
        writer.writerows(rows)
