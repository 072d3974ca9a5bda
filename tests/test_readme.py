"""README.md is the front page: its Python code must run as printed, and its table must name every experiment.

The code blocks are taken from the README itself, so an edit to the library that breaks the example (a renamed
scorer, a changed signature, another return type) fails here instead of rotting unnoticed.
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def python_blocks(markdown: str) -> list:
    "The contents of every ```python fenced block, in order."
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)


def test_finds_the_code_blocks():
    blocks = python_blocks("text\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n")
    assert blocks == ["x = 1\n", "y = 2\nz = 3\n"]


def test_python_code_runs_as_printed(tmp_path):
    blocks = python_blocks(README)
    assert blocks, "README.md has no ```python block to test"
    for block in blocks:
        ast.parse(block)  # a syntax error is reported with the block, below, but fails early and clearly here
        environment = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        # run from an empty folder, as a user's own script would be: nothing may depend on the checkout's cwd
        finished = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=environment, capture_output=True,
                                  text=True, timeout=300)
        assert finished.returncode == 0, f"README code failed:\n{block}\n--- stderr ---\n{finished.stderr[-3000:]}"
        results = [ast.literal_eval(line) for line in finished.stdout.splitlines() if line.startswith("{")]
        assert results, finished.stdout
        for metrics in results:  # what the README says evaluate returns, and a clear separation on the toy data
            assert set(metrics) == {"auroc", "fpr95", "aupr_in", "aupr_out"}
            assert all(0.0 <= value <= 1.0 for value in metrics.values())
            assert metrics["auroc"] > 0.9, metrics


def test_table_names_every_experiment():
    from ood_repro.cli import catalogue

    table = README.split("<!-- ood-repro list --markdown -->")[1].split("<!-- end of ood-repro list --markdown -->")[0]
    listed = re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE)
    expected = [experiment.name for experiment in catalogue()]
    assert listed[:len(expected)] == expected, "regenerate the table with `ood-repro list --markdown`"


CLAIMS_START = '<!-- ood_repro.report.claims_markdown("smoke") -->'
CLAIMS_END = '<!-- end of ood_repro.report.claims_markdown("smoke") -->'
CLAIM_ROW = re.compile(r"^\| `([^`]+)` \| (.+?) \| ([-+.\d]+) \| ([-+.\d]+) \| ([-+.\d]+) \| ([-+.\d]+) \| (yes|no) \|$",
                       flags=re.MULTILINE)
TOLERANCE = 0.5  # points: another CPU's float rounding may move a toy number a little, never this much


def test_claims_table_matches_the_smoke_run():
    "README's table of the papers' comparisons is what the smoke run that `make test` has just made gives."
    import pytest
    from ood_repro.config import load_config
    from ood_repro.report import PAPER_CLAIMS, claims_table

    results = load_config().output_dir("smoke")
    missing = sorted({claim.experiment for claim in PAPER_CLAIMS if not (results / f"{claim.experiment}.csv").is_file()})
    if missing:
        message = f"no smoke results of {missing} in {results}: run the notebooks first (`make test` does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    rows = CLAIM_ROW.findall(README.split(CLAIMS_START)[1].split(CLAIMS_END)[0])
    table = claims_table(results)
    regenerate = "regenerate README's table with `make toy-claims`"
    assert [(row[0], row[1]) for row in rows] == list(zip(table["experiment"], table["comparison"])), regenerate
    for row, record in zip(rows, table.to_dict("records")):
        printed = dict(zip(("AUROC paper", "AUROC ours", "FPR95 paper", "FPR95 ours"), map(float, row[2:6])))
        for column, value in printed.items():
            assert abs(value - record[column]) <= TOLERANCE, (row[1], column, value, record[column], regenerate)
        if abs(record["AUROC ours"]) > TOLERANCE:  # a difference near zero may change sign between machines
            assert (row[6] == "yes") == record["same direction"], (row[1], regenerate)
