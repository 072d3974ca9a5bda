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
