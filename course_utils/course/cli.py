"""The ``course`` command: build, check and grade.

    course build [NAME ...]            write notebooks' .ipynb, solution .ipynb and exercises/ from their sources
                                       (only the named lectures / homework, e.g. `course build 05 hw05`)
    course check                       fail if anything generated is out of date or leaks solutions
    course grade hw01 SUBMISSIONS/     grade a folder of submissions (each kernel sandboxed; hidden tests run outside it)
                                       into a gradebook and a CSV; --jobs N in parallel, --shard I/N one slice
    course grade hw01 --merge OUT1 OUT2 --out OUT   join the shards' gradebooks and CSVs
    course bench notebooks [--busy 1]  time every lecture and solution notebook against its budget (with other
                                       busy processes); prints the thread count and the load it ran under
    course bench flows                 train the chapter-02 flows (and zuko's, if installed) on every toy target
    course bench gan                   chapter 05's WGAN-GP recipe and each departure from it, on three seeds
    course bench models                every model family with a likelihood and a sampler (flow, DDPM via its
                                       PF-ODE, flow matching with both couplings; zuko's NSF and torchcfm if
                                       installed) on every toy target, for the same wall-clock budget
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .pipeline import Course, build, check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description="Build, check and grade the course.")
    parser.add_argument("--root", type=Path, default=None, help="course checkout (default: found from the current folder)")
    sub = parser.add_subparsers(dest="command", required=True)
    bu = sub.add_parser("build", help="write every generated file (.ipynb from .py sources; exercises/ with nbgrader)")
    bu.add_argument("only", nargs="*", help="only these lectures or homework, by name or prefix (e.g. 05 hw05)")
    sub.add_parser("check", help="fail when a generated file is out of date or solution code leaks into exercises/")
    g = sub.add_parser("grade", help="grade a folder of submissions (sandboxed; see the README's instructor section)")
    g.add_argument("assignment", help="homework name or prefix, e.g. hw01")
    g.add_argument("submissions", type=Path, nargs="?", default=None,
                   help="folder with <student>.ipynb, <student>/<notebook>.ipynb or <student>/<assignment>/<notebook>.ipynb")
    g.add_argument("--out", type=Path, default=None, help="output folder (default: grades/<assignment>/)")
    g.add_argument("--cell-timeout", type=int, default=60, help="seconds a cell (or a hidden check's call) may run (default 60)")
    g.add_argument("--notebook-timeout", type=int, default=300,
                   help="seconds one submission may run, hidden checks included (default 300)")
    g.add_argument("--jobs", type=int, default=1, help="grade this many submissions at a time (default 1)")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="grade only the I-th of N slices of the folder (1-based), for a cluster's job array")
    g.add_argument("--merge", type=Path, nargs="+", default=None, metavar="OUT",
                   help="join the output folders of --shard runs into --out (no grading)")
    g.add_argument("--memory-mb", type=int, default=4096, help="memory one submission may use (default 4096)")
    g.add_argument("--processes", type=int, default=256, help="processes and threads one submission may use (default 256)")
    g.add_argument("--output-mb", type=float, default=4.0,
                   help="notebook output recorded per submission; beyond it, status `output too large` (default 4)")
    g.add_argument("--unsandboxed", action="store_true",
                   help="grade even where no sandbox is available (macOS, Windows): the students' code then runs with "
                        "your rights; every row of the CSV says so")
    b = sub.add_parser("bench", help="measure: `notebooks` (times against budgets), `flows` (KL gaps on the toy zoo) or "
                                      "`models` (every model family on the toy zoo) or `gan` (chapter 05's WGAN-GP recipe)")
    b.add_argument("what", choices=["notebooks", "flows", "models", "gan"], help="what to benchmark")
    b.add_argument("--seconds", type=float, default=None,
                   help="flows, models: training budget per model and target (default 10 for flows, 20 for models)")
    b.add_argument("--targets", nargs="*", default=None, help="flows, models: toy targets (default: all)")
    b.add_argument("--models", nargs="*", default=None, help="flows, models: models (default: all available)")
    b.add_argument("--busy", type=int, default=0,
                   help="notebooks: run this many other CPU-bound processes meanwhile (a busy laptop; default 0)")
    b.add_argument("--only", nargs="*", default=None, help="notebooks: only these lectures / homework (e.g. 05 hw05)")
    b.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="gan: seeds (default 0 1 2)")
    b.add_argument("--variants", nargs="*", default=None,
                   help="gan: which of 'recipe', 'two-sided penalty', 'default initialisation', "
                        "'two-sided, default init.', '2000 steps' (default: all)")
    args = parser.parse_args(argv)

    course = Course.find(args.root)
    if args.command == "build":
        build(course, only=args.only)
        return 0
    if args.command == "check":
        problems = check(course)
        for p in problems:
            print(f"✗ {p}")
        if problems:
            print(f"course check: {len(problems)} problem(s)")
            return 1
        print("course check: all generated files are in date and nothing leaks")
        return 0
    if args.command == "grade":
        from .grading import grade, merge
        from .sandbox import Limits

        if args.merge:
            if args.out is None:
                parser.error("--merge needs --out (the folder to write the joined gradebook and CSV to)")
            merge(course, args.assignment, args.merge, args.out)
            return 0
        if args.submissions is None:
            parser.error("the folder of submissions is required (or --merge OUT1 OUT2 ... --out OUT)")
        shard = None
        if args.shard:
            try:
                i, n = (int(x) for x in args.shard.split("/"))
                assert 1 <= i <= n
            except (ValueError, AssertionError):
                parser.error(f"--shard wants I/N with 1 <= I <= N, e.g. 3/8; got {args.shard!r}")
            shard = (i, n)
        if args.jobs < 1:
            parser.error("--jobs must be at least 1")
        limits = Limits(memory_mb=args.memory_mb, processes=args.processes, output_mb=args.output_mb)
        grade(course, args.assignment, args.submissions, args.out, args.cell_timeout, args.notebook_timeout,
              jobs=args.jobs, shard=shard, limits=limits, allow_unsandboxed=args.unsandboxed)
        return 0
    if args.command == "bench":
        from .bench import bench_flows, bench_gan, bench_models, bench_notebooks

        if args.what == "flows":
            bench_flows(args.seconds or 10.0, args.targets, args.models)
            return 0
        if args.what == "models":
            bench_models(args.seconds or 20.0, args.targets, args.models)
            return 0
        if args.what == "gan":
            bench_gan(tuple(args.seeds), args.variants)
            return 0
        return bench_notebooks(course, busy=args.busy, only=args.only)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
