"""Command line: ``python -m course list | run | release | check | grade``."""
from __future__ import annotations

import argparse
import pathlib
import sys

from course import notebooks as nbs

PROFILES = nbs.PROFILES


def _profile(value: str) -> str:
    if value not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"unknown profile {value!r}; expected one of {', '.join(PROFILES)}")
    return value


def _lessons(specs: list[str]) -> list[nbs.Lesson]:
    return [nbs.find_lesson(s) for s in specs] if specs else nbs.lessons()


def cmd_list(args) -> int:
    rows = [("lesson", "title", *(f"{p} min" for p in PROFILES))]
    for lesson in nbs.lessons():
        nb = lesson.read()
        minutes = lesson.minutes(nb)
        rows.append((lesson.name, lesson.title(nb), *(str(minutes.get(p, "?")) for p in PROFILES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_run(args) -> int:
    from companion.config import profile as active_profile
    from course.runner import run_lesson

    if args.out and args.inplace:
        print("error: --out and --inplace exclude each other", file=sys.stderr)
        return 2
    profile = args.profile or active_profile()
    failed = 0
    for lesson in _lessons(args.lessons):
        print(f"running {lesson.name} (profile {profile}) ...", flush=True)
        report = run_lesson(lesson.path, profile, out=args.out, inplace=args.inplace,
                            timeout=args.timeout)
        for g in report.gates:
            note = f" ({g['note']})" if g.get("note") else ""
            print(f"  gate {g['name']}: {g['value']} {g['op']} {g['bar']}{note} {g['status']}")
        status = "ok" if report.ok else "FAILED"
        print(f"{lesson.name}: {status} in {report.seconds:.1f} s (profile {profile}, "
              f"{len(report.gates)} gates)")
        if report.error:
            print("  " + report.error.replace("\n", "\n  "))
        failed += not report.ok
    return 1 if failed else 0


def cmd_release(args) -> int:
    out: pathlib.Path = args.out
    for lesson in _lessons(args.lessons):
        student = nbs.release_notebook(lesson.read())
        nbs.write_notebook(student, out / lesson.path.name)
        print(f"wrote {out / lesson.path.name} ({len(nbs.exercises(student))} exercises)")
    return 0


def cmd_check(args) -> int:
    bad = 0
    for lesson in _lessons(args.lessons):
        problems = nbs.lint(lesson.path)
        print(f"{lesson.path.name}: {'ok' if not problems else f'{len(problems)} problems'}")
        for p in problems:
            print(f"  - {p}")
        bad += bool(problems)
    return 1 if bad else 0


def cmd_grade(args) -> int:
    from course.grade import grade_submission, write_csv

    rows = []
    for sub in args.submissions:
        if not sub.is_file():
            print(f"error: submission {sub} does not exist", file=sys.stderr)
            return 2
        lesson = nbs.find_lesson(args.lesson or sub.name[:2])
        sub_rows = grade_submission(sub, lesson, args.profile, timeout=args.timeout)
        passed = sum(r["status"] == "passed" for r in sub_rows)
        print(f"{sub.name} ({lesson.name}): {passed}/{len(sub_rows)} exercises passed")
        for r in sub_rows:
            print(f"  {r['exercise']:<24} {r['status']:<14} {r['passed']}/{r['total']} checks")
        rows.extend(sub_rows)
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="lessons, titles and time per profile").set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="execute lessons headless and report time and gates")
    run.add_argument("lessons", nargs="*", help="numbers (01) or files; default: all")
    run.add_argument("--profile", type=_profile, help="smoke, standard or full")
    run.add_argument("--out", type=pathlib.Path, help="write executed notebooks to this folder")
    run.add_argument("--inplace", action="store_true", help="store outputs in the lessons")
    run.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    run.set_defaults(func=cmd_run)

    rel = sub.add_parser("release", help="build the student notebooks (solutions removed)")
    rel.add_argument("lessons", nargs="*")
    rel.add_argument("--out", type=pathlib.Path, required=True)
    rel.set_defaults(func=cmd_release)

    chk = sub.add_parser("check", help="lint the lessons")
    chk.add_argument("lessons", nargs="*")
    chk.set_defaults(func=cmd_check)

    grd = sub.add_parser("grade", help="grade submitted notebooks with the checkers")
    grd.add_argument("submissions", nargs="+", type=pathlib.Path)
    grd.add_argument("--lesson", help="the lesson (default: from the file name, e.g. 00_...)")
    grd.add_argument("--profile", type=_profile, default="smoke")
    grd.add_argument("--csv", type=pathlib.Path, help="also write the grades to this CSV file")
    grd.add_argument("--timeout", type=int, default=900)
    grd.set_defaults(func=cmd_grade)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
