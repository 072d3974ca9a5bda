"""Every notebook as a test, as `nbdev_test --n_workers N --timing` runs them, with a line as each one finishes.

`nbdev_test` prints nothing until the last notebook is done (minutes of silence in `make test`, and in a CI log
that is not a terminal even `--do_print` comes out only at the end). This runs the same function, nbdev's
`test_nb`, over the same notebooks (nbdev's `nbglob` of the nbs folder, skipping folders with a `.notest` file)
with the same skip flags (settings.ini's `tst_flags`, minus `--flags`), in a pool of worker processes, and prints
`ok`/`FAILED`, the time and the count for each notebook the moment it finishes. A failing notebook's traceback
is printed by `test_nb` itself; the run exits with status 1 when any notebook failed, after naming them all.
Run from the repository root (`make test`, `make test-slow`):

    python .ci/test_notebooks.py --n_workers 2 [--flags slow] [--path 01_metrics.ipynb]
"""
import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import test_nb


def notebooks(path: str | None) -> list:
    "The notebooks nbdev_test would test: `path` (a name or glob under nbs/) or all, sorted, without `.notest` folders."
    files = nbglob(path, as_path=True)
    return [file.absolute() for file in sorted(files) if not (file.parent / ".notest").exists()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=None, help="a notebook name or glob under nbs/ (default: every notebook)")
    parser.add_argument("--flags", default="", help="space-separated test flags to run that are normally skipped")
    parser.add_argument("--n_workers", type=int, default=2, help="notebooks run at once (default 2)")
    arguments = parser.parse_args()
    if arguments.n_workers < 1:
        parser.error(f"--n_workers must be at least 1, not {arguments.n_workers}")

    config = get_config()
    skip_flags, force_flags = config.tst_flags.split(), arguments.flags.split()
    os.chdir(config.nbs_path)  # where nbdev_test runs them: `--path` and the notebooks' relative paths start in nbs/
    files = notebooks(arguments.path)
    if not files:
        print(f"No notebooks match {arguments.path!r} under {config.nbs_path}.")
        return 1
    print(f"Testing {len(files)} notebooks, {arguments.n_workers} at a time"
          + (f", flags {arguments.flags!r} included" if arguments.flags else "") + ":", flush=True)
    started, times, failed, futures = time.monotonic(), {}, [], {}
    with ProcessPoolExecutor(max_workers=arguments.n_workers) as pool:
        for file in files:
            futures[pool.submit(test_nb, file, skip_flags=skip_flags, force_flags=force_flags,
                                basepath=config.config_path)] = file
            time.sleep(0.01)  # nbdev_test's pause between notebooks (its `pause`), against start-up races
        for done, future in enumerate(as_completed(futures), start=1):
            file = futures[future]
            try:
                passed, seconds = future.result()
            except BrokenProcessPool as error:  # the worker died (e.g. killed for memory): no traceback to show
                passed, seconds = False, time.monotonic() - started
                print(f"{file.name}: its worker process died ({error})", file=sys.stderr, flush=True)
            times[file.name] = seconds
            if not passed:
                failed.append(file.name)
            status = "ok    " if passed else "FAILED"
            print(f"{status} {file.name:<32} {seconds:6.1f} s   [{done}/{len(files)}]", flush=True)

    elapsed = time.monotonic() - started
    slowest = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in
                        sorted(times.items(), key=lambda item: item[1], reverse=True)[:5])
    print(f"notebooks: {len(files) - len(failed)} passed, {len(failed)} failed in {elapsed:.0f} s; slowest: {slowest}")
    if failed:
        print("Failed notebooks:\n" + "\n".join(f"  {name}" for name in sorted(failed)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
