"""Reading, transforming and linting the lesson notebooks.

Conventions (COURSE_DESIGN.md sections 5 to 7):

- an exercise is a code cell whose first comment line is ``# EXERCISE <name>``, with the solution
  between nbgrader's ``### BEGIN SOLUTION`` and ``### END SOLUTION`` markers;
- a later cell calls ``check.<name>(...)``;
- each lesson's metadata holds ``course.minutes``: the expected wall time per profile.
"""
from __future__ import annotations

import ast
import copy
import pathlib
import re
from dataclasses import dataclass

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
PROFILES = ("smoke", "standard", "full")
MAX_MB = 3.0

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
EXERCISE_RE = re.compile(r"^# EXERCISE (\w+)\s*$", re.M)
CHECK_RE = re.compile(r"\bcheck\.(\w+)\(")
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
MARKDOWN_STUB = "YOUR ANSWER HERE"
PROGRESS_RE = re.compile(r"HBox\(children|FloatProgress|IntProgress|\d+%\|")
WIDGET_TEXT_RE = re.compile(r"\b(interactive|VBox|HBox)\(children=")
ADDRESS_RE = re.compile(r" at 0x[0-9a-f]{6,}")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass
class Lesson:
    number: str
    path: pathlib.Path

    @property
    def name(self) -> str:
        return self.path.stem

    def read(self) -> nbformat.NotebookNode:
        return nbformat.read(self.path, as_version=4)

    def title(self, nb=None) -> str:
        nb = nb or self.read()
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                m = re.search(r"^#\s+(.+)$", cell.source, re.M)
                if m:
                    return m.group(1).strip()
        return self.name

    def minutes(self, nb=None) -> dict:
        nb = nb or self.read()
        return dict(nb.metadata.get("course", {}).get("minutes", {}))


def lessons(folder: pathlib.Path = LESSONS_DIR) -> list[Lesson]:
    """The ordered lessons: ``NN_name.ipynb`` files in ``folder``."""
    found = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        found.append(Lesson(path.name[:2], path))
    return found


def find_lesson(spec: str, folder: pathlib.Path = LESSONS_DIR) -> Lesson:
    """A lesson by number (``01`` or ``1``), file name or path; ``ValueError`` if unknown."""
    all_lessons = lessons(folder)
    path = pathlib.Path(spec)
    if path.suffix == ".ipynb" and path.is_file():
        return Lesson(path.name[:2], path.resolve())
    for lesson in all_lessons:
        if spec in (lesson.number, lesson.path.name, lesson.name) or (
                spec.isdigit() and int(spec) == int(lesson.number)):
            return lesson
    known = ", ".join(f"{lsn.number} ({lsn.name})" for lsn in all_lessons) or "none"
    raise ValueError(f"lesson: unknown lesson {spec!r}; known lessons: {known}")


# ---------------------------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------------------------

def exercise_name(source: str) -> str | None:
    m = EXERCISE_RE.search(source)
    return m.group(1) if m else None


def exercises(nb) -> dict[str, int]:
    """``exercise name -> cell index`` for every exercise cell."""
    return {name: i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and (name := exercise_name(cell.source))}


def strip_solutions(source: str, markdown: bool = False) -> str:
    """Replace each BEGIN/END SOLUTION block by the stub, keeping the marker's indentation."""
    out, inside = [], False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend([MARKDOWN_STUB] if markdown else [indent + s for s in STUB])
        elif stripped == END:
            if not inside:
                raise ValueError("### END SOLUTION without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without END")
    return "\n".join(out)


def release_notebook(nb):
    """The student version: solution blocks replaced, outputs cleared, everything else kept."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if BEGIN in cell.source:
            cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    nb.metadata.setdefault("course", {})["release"] = "student"
    return nb


def clean_outputs(nb):
    """Drop what must not be stored: widget views, execution timings, widget state."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if WIDGET_MIME in out.get("data", {}):
                continue
            if out.get("output_type") == "stream" and PROGRESS_RE.search(out.get("text", "")):
                continue
            kept.append(out)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)
    return nb


# ---------------------------------------------------------------------------------------------
# Names an exercise defines that the rest of the lesson must not use
# ---------------------------------------------------------------------------------------------

def _python(source: str) -> str:
    """Source with IPython magics and shell escapes blanked, so ``ast`` can parse it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n"))


def _defined(tree: ast.AST) -> set[str]:
    names = set()
    for node in tree.body if isinstance(tree, ast.Module) else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def exercise_leaks(nb) -> list[str]:
    """Cells after an exercise that use a name only exercise cells define.

    Such a cell would break in the student release, where the exercise is unsolved. The check
    cell of an exercise may pass the exercise's function to its checker.
    """
    problems, only_exercise, elsewhere = [], {}, set()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_python(cell.source))
        except SyntaxError as exc:
            problems.append(f"cell {i}: does not parse ({exc.msg}, line {exc.lineno})")
            continue
        name = exercise_name(cell.source)
        if name:
            for defined in _defined(tree):
                if defined not in elsewhere:
                    only_exercise[defined] = name
            continue
        checked = set(CHECK_RE.findall(cell.source))
        for used in sorted(_loaded(tree) & set(only_exercise)):
            if only_exercise[used] in checked and used == only_exercise[used]:
                continue
            problems.append(f"cell {i}: uses {used!r}, which only exercise "
                            f"'{only_exercise[used]}' defines (it is unsolved in the release)")
        for defined in _defined(tree):
            elsewhere.add(defined)
            only_exercise.pop(defined, None)
    return problems


# ---------------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------------

def lint(path: pathlib.Path) -> list[str]:
    """Problems with one lesson notebook (an empty list when it is clean)."""
    problems = []
    size_mb = path.stat().st_size / 1e6
    if size_mb > MAX_MB:
        problems.append(f"{size_mb:.1f} MB stored; keep a lesson under {MAX_MB:.0f} MB")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001
        return problems + [f"not a valid notebook ({exc})"]

    minutes = nb.metadata.get("course", {}).get("minutes", {})
    missing = [p for p in PROFILES if p not in minutes]
    if missing:
        problems.append(f"metadata course.minutes lacks {missing}")
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if not re.search(r"^#\s+\S", markdown, re.M):
        problems.append("no '# Title' heading in a markdown cell")
    for section in ("Check your understanding", "References"):
        if section.lower() not in markdown.lower():
            problems.append(f"no '{section}' section")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    if not any(re.search(r"config\.(profile|setup)\(", src) for src in code):
        problems.append("no set-up cell calling companion.config.profile() or config.setup()")

    names = []
    for i, cell in enumerate(nb.cells):
        src = cell.source
        if src.count(BEGIN) != src.count(END):
            problems.append(f"cell {i}: {src.count(BEGIN)} BEGIN SOLUTION vs "
                            f"{src.count(END)} END SOLUTION markers")
        elif BEGIN in src:
            try:
                strip_solutions(src)
            except ValueError as exc:
                problems.append(f"cell {i}: {exc}")
        if cell.cell_type != "code":
            continue
        name = exercise_name(src)
        if name:
            names.append(name)
            if BEGIN not in src:
                problems.append(f"cell {i}: exercise '{name}' has no solution markers")
            later = " ".join(c.source for c in nb.cells[i + 1:] if c.cell_type == "code")
            if name not in CHECK_RE.findall(later):
                problems.append(f"exercise '{name}' has no later check.{name}(...) call")
        elif BEGIN in src:
            problems.append(f"cell {i}: solution markers outside an '# EXERCISE name' cell")
        if "# NBVAL_CHECK_OUTPUT" in src and not cell.outputs:
            problems.append(f"cell {i}: NBVAL_CHECK_OUTPUT but no stored output to compare")
        for out in cell.outputs:
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: stored error output ({out.get('ename')})")
            data = out.get("data", {})
            if "image/svg+xml" in data or "application/pdf" in data:
                problems.append(f"cell {i}: SVG/PDF output; use PNG figures")
            if WIDGET_MIME in data:
                problems.append(f"cell {i}: stored widget view (run `python -m course run "
                                f"--inplace`, which cleans it)")
            text = out.get("text", "") + "".join(data.get("text/plain", ""))
            if PROGRESS_RE.search(text):
                problems.append(f"cell {i}: progress-bar text stored in outputs")
            if WIDGET_TEXT_RE.search(text):
                problems.append(f"cell {i}: widget-state text stored in outputs")
            if ADDRESS_RE.search(text):
                problems.append(f"cell {i}: memory address in a stored output")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"exercise names used twice: {dupes}")
    if nb.metadata.get("widgets"):
        problems.append("widget state stored in the notebook metadata")
    problems.extend(exercise_leaks(nb))
    return problems


def write_notebook(nb, path: pathlib.Path) -> None:
    """Write atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(nbformat.writes(nb), encoding="utf-8")
    tmp.replace(path)
