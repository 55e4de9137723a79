"""Course tooling on small synthetic notebooks: release, lint, name leaks, the CLI."""
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course import notebooks as nbs
from course.__main__ import main

EXERCISE = '''# EXERCISE double
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION'''


def _lesson(*cells, minutes=True):
    nb = new_notebook(cells=[
        new_markdown_cell("# A lesson\n\n## Check your understanding\n\n## References"),
        new_code_cell("from companion import config\nprofile = config.profile()"),
        *cells,
    ])
    nb.metadata["course"] = {"minutes": {"smoke": 0.1, "standard": 1, "full": 1}} if minutes else {}
    return nb


def _write(tmp_path, nb, name="01_test.ipynb"):
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_strip_solutions_keeps_indentation_and_the_rest():
    out = nbs.strip_solutions(EXERCISE)
    assert out.splitlines() == [
        "# EXERCISE double", "def double(x):", '    """Twice x."""',
        "    # YOUR CODE HERE", "    raise NotImplementedError()"]
    with pytest.raises(ValueError, match="without END"):
        nbs.strip_solutions("### BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="without BEGIN"):
        nbs.strip_solutions("x = 1\n### END SOLUTION")


def test_release_clears_outputs_and_keeps_checks():
    cell = new_code_cell(EXERCISE, execution_count=3,
                         outputs=[new_output("stream", name="stdout", text="hi")])
    nb = _lesson(cell, new_code_cell("check.double(double)"),
                 new_markdown_cell("Answer:\n### BEGIN SOLUTION\nforty-two\n### END SOLUTION"))
    student = nbs.release_notebook(nb)
    assert "raise NotImplementedError()" in student.cells[2].source
    assert "2 * x" not in student.cells[2].source
    assert student.cells[2].outputs == [] and student.cells[2].execution_count is None
    assert student.cells[3].source == "check.double(double)"
    assert "forty-two" not in student.cells[4].source and "YOUR ANSWER HERE" in student.cells[4].source
    assert nb.cells[2].outputs, "the solution notebook itself is untouched"


def test_lint_accepts_a_clean_lesson(tmp_path):
    nb = _lesson(new_code_cell(EXERCISE), new_code_cell("check.double(double)"))
    assert nbs.lint(_write(tmp_path, nb)) == []


@pytest.mark.parametrize("cells, problem", [
    ([new_code_cell(EXERCISE)], "has no later check.double"),
    ([new_code_cell(EXERCISE.replace("    ### END SOLUTION", "")),
      new_code_cell("check.double(double)")], "BEGIN SOLUTION vs 0 END"),
    ([new_code_cell("x = 1\n### BEGIN SOLUTION\n### END SOLUTION")], "outside an '# EXERCISE"),
    ([new_code_cell("1/0", outputs=[new_output("error", ename="ZeroDivisionError",
                                                evalue="", traceback=[])])], "stored error"),
    ([new_code_cell("f()", outputs=[new_output("stream", name="stderr",
                                                text=" 40%|####      | 4/10")])], "progress-bar"),
    ([new_code_cell("o", outputs=[new_output("execute_result", data={
        "text/plain": "<object at 0x7f1234abcd>"}, execution_count=1)])], "memory address"),
    ([new_code_cell("fig", outputs=[new_output("display_data", data={
        "image/svg+xml": "<svg/>"})])], "SVG/PDF"),
    ([new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)")], "no stored output"),
    ([new_code_cell(EXERCISE), new_code_cell("check.double(double)"),
      new_code_cell("print(double(3))")], "only exercise 'double' defines"),
])
def test_lint_finds_each_problem(tmp_path, cells, problem):
    problems = nbs.lint(_write(tmp_path, _lesson(*cells)))
    assert any(problem in p for p in problems), problems


def test_lint_requires_metadata_and_sections(tmp_path):
    nb = _lesson(minutes=False)
    nb.cells[0].source = "# Title only"
    problems = " | ".join(nbs.lint(_write(tmp_path, nb)))
    assert "course.minutes" in problems and "Check your understanding" in problems


def test_exercise_leaks_allow_redefinition_and_the_check_cell():
    nb = _lesson(new_code_cell(EXERCISE), new_code_cell("check.double(double)"),
                 new_code_cell("from companion.basics import bits_per_dim as double"),
                 new_code_cell("print(double(3))"))
    assert nbs.exercise_leaks(nb) == []


def test_find_lesson():
    assert nbs.find_lesson("00").name == "00_start_here"
    assert nbs.find_lesson("0").name == "00_start_here"
    assert nbs.find_lesson("00_start_here.ipynb").number == "00"
    with pytest.raises(ValueError, match="unknown lesson '42'.*00 \\(00_start_here\\)"):
        nbs.find_lesson("42")


def test_cli_list_and_check(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "00_start_here" in out and "smoke min" in out
    assert main(["check"]) == 0
    assert "00_start_here.ipynb: ok" in capsys.readouterr().out


def test_cli_errors(capsys, tmp_path):
    assert main(["run", "99"]) == 2
    assert "unknown lesson '99'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["run", "00", "--profile", "turbo"])
    assert exc.value.code == 2
    assert "unknown profile 'turbo'" in capsys.readouterr().err
    bad = _write(tmp_path, _lesson(new_code_cell(EXERCISE)))
    assert main(["check", str(bad)]) == 1


def test_cli_release(tmp_path, capsys):
    assert main(["release", "00", "--out", str(tmp_path)]) == 0
    student = nbformat.read(tmp_path / "00_start_here.ipynb", as_version=4)
    assert student.metadata["course"]["release"] == "student"
    assert "4 exercises" in capsys.readouterr().out


def test_cli_run_reports_gates_and_fails_on_a_failing_gate(tmp_path, capsys):
    gate_cell = "from companion.gates import gate\ngate('toy', {value}, '>=', 1.0, 'a toy bar')"
    good = _write(tmp_path, _lesson(new_code_cell(gate_cell.format(value=2.0))), "01_good.ipynb")
    bad = _write(tmp_path, _lesson(new_code_cell(gate_cell.format(value=0.5))), "02_bad.ipynb")
    before = bad.read_text()
    out_dir = tmp_path / "out"
    assert main(["run", str(good), "--profile", "smoke", "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "gate toy: 2 >= 1 (a toy bar) PASS" in printed and "01_good: ok in" in printed
    assert (out_dir / "01_good.ipynb").is_file()
    assert main(["run", str(bad), "--profile", "smoke", "--inplace"]) == 1
    printed = capsys.readouterr().out
    assert "gate toy: 0.5 >= 1 (a toy bar) FAIL" in printed and "02_bad: FAILED" in printed
    assert bad.read_text() == before, "a failed run is never stored in the lesson"
