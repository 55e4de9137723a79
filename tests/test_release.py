"""The student release runs top to bottom with every exercise unsolved.

For every lesson, cheaply: the release differs from the solution notebook only in solution blocks
and outputs; no later cell uses a name only an exercise cell defines; and each exercise cell with
its check cell runs in a fresh kernel (after the set-up cell) and reports "not attempted" without
raising. Lessons in FULL_RUN are also executed end to end; grading is shown on lesson 00.
"""
import re

import nbformat
import pytest

from course import notebooks as nbs
from course.grade import grade_submission
from course.runner import execute, gates_of

LESSONS = nbs.lessons()
FULL_RUN = {"00"}


def _outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lsn: lsn.name)
def test_release_differs_only_in_solutions(lesson):
    solution = lesson.read()
    student = nbs.release_notebook(solution)
    assert len(student.cells) == len(solution.cells)
    for sol, stu in zip(solution.cells, student.cells, strict=True):
        assert sol.cell_type == stu.cell_type
        expected = nbs.strip_solutions(sol.source, markdown=sol.cell_type == "markdown")
        assert stu.source == expected
        if stu.cell_type == "code":
            assert stu.outputs == []
    assert nbs.exercises(student), "a lesson has exercises"
    assert nbs.exercise_leaks(student) == []


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lsn: lsn.name)
def test_unsolved_exercises_report_not_attempted_in_a_fresh_kernel(lesson):
    student = nbs.release_notebook(lesson.read())
    code = [c for c in student.cells if c.cell_type == "code"]
    setup_end = next(i for i, c in enumerate(code) if re.search(r"config\.(setup|profile)\(",
                                                                 c.source))
    cells = [nbformat.v4.new_code_cell(c.source) for c in code[: setup_end + 1]]
    names = []
    for i, cell in enumerate(code):
        name = nbs.exercise_name(cell.source)
        if not name:
            continue
        check_cell = next(c for c in code[i + 1:] if f"check.{name}(" in c.source)
        cells += [nbformat.v4.new_code_cell(cell.source), nbformat.v4.new_code_cell(check_cell.source)]
        names.append(name)
    nb = nbformat.v4.new_notebook(cells=cells, metadata=student.metadata)
    executed, error = execute(nb, lesson.path.parent, "smoke", timeout=300)
    assert error == ""
    printed = "\n".join(_outputs_text(c) for c in executed.cells)
    for name in names:
        assert f"{name}: not attempted" in printed


@pytest.mark.parametrize("lesson", [lsn for lsn in LESSONS if lsn.number in FULL_RUN],
                         ids=lambda lsn: lsn.name)
def test_release_runs_end_to_end(lesson):
    student = nbs.release_notebook(lesson.read())
    executed, error = execute(student, lesson.path.parent, "smoke", timeout=300)
    assert error == "", error
    gates = gates_of(executed)
    assert gates and all(g["status"] == "PASS" for g in gates)
    printed = "\n".join(_outputs_text(c) for c in executed.cells)
    assert printed.count(": not attempted") == len(nbs.exercises(student))


def test_grading_uses_only_the_students_exercise_cells(tmp_path):
    lesson = nbs.find_lesson("00")
    solution = lesson.read()
    submission = nbs.release_notebook(solution)
    cells = {nbs.exercise_name(c.source): c for c in submission.cells
             if c.cell_type == "code" and nbs.exercise_name(c.source)}
    solved = {nbs.exercise_name(c.source): c.source for c in solution.cells
              if c.cell_type == "code" and nbs.exercise_name(c.source)}
    cells["gaussian_nll"].source = solved["gaussian_nll"]                 # right
    cells["bits_per_dim"].source = solved["bits_per_dim"].replace(         # wrong
        "nll_nats / (num_dims * math.log(2))", "nll_nats * math.log(2) / num_dims")
    for cell in submission.cells:                                          # tampering is ignored
        if cell.source.startswith("check.bernoulli_nll"):
            cell.source = "print('bernoulli_nll: passed')"
    path = tmp_path / "00_alice.ipynb"
    nbformat.write(submission, path)
    rows = {r["exercise"]: r for r in grade_submission(path, lesson)}
    assert rows["gaussian_nll"]["status"] == "passed"
    assert rows["bits_per_dim"]["status"] == "failed"
    assert rows["bernoulli_nll"]["status"] == "not attempted"
    assert rows["sample_categorical"]["status"] == "not attempted"
