"""Every parameter of every experiment notebook is visible to papermill and read by the notebook.

`papermill --help-notebook` is how a user learns what `-p NAME VALUE` accepts; papermill's own parser drops a line
it cannot read (it did for comments containing `=`), so the parameter silently disappears from the help. And a
parameter that no cell reads is worse than none: `-p tau 0.9` once ran fig3_tagood unchanged, byte for byte.
"""
import ast
import json
from pathlib import Path

import papermill
import pytest

from ood_repro.cli import read_parameters

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*REPO.glob("nbs/tab*_*.ipynb"), *REPO.glob("nbs/fig*_*.ipynb")])


def code_cells(notebook: Path) -> list:
    "(is the parameters cell, source) of each code cell, in order."
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return [("parameters" in cell["metadata"].get("tags", []), "".join(cell["source"]))
            for cell in cells if cell["cell_type"] == "code"]


def names_read(source: str) -> set:
    """Names loaded in `source`, leaving out the arguments of `check_parameters(...)`: that call validates every
    parameter (it receives `globals()`), which is not using one."""
    tree = ast.parse(source)
    skipped = {id(node) for call in ast.walk(tree)
               if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check_parameters"
               for node in ast.walk(call)}
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in skipped}


def test_experiment_notebooks_are_found():
    names = {path.stem for path in NOTEBOOKS}
    assert {"tab1_tagood", "tab1_synood", "fig3_tagood", "fig3_synood"} <= names and len(names) >= 15


def test_names_read_skips_only_check_parameters():
    source = "check_parameters('x', globals())\ny = tau + 1\nprint(alpha)\nbeta = 2"
    assert names_read(source) == {"tau", "print", "alpha"}
    assert names_read("check_parameters('x', {'tau': tau})") == set()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_papermill_sees_every_parameter_with_its_comment(notebook):
    ours = read_parameters(notebook)
    inspected = papermill.inspect_notebook(str(notebook))
    assert list(inspected) == list(ours), (
        f"{notebook.name}: papermill --help-notebook lists {sorted(inspected)}, the parameters cell defines "
        f"{sorted(ours)}; papermill drops a line whose comment it cannot parse (e.g. one with '=' in it).")
    for name, parameter in ours.items():
        assert parameter.comment, f"{notebook.name}: parameter {name!r} has no comment saying what it does."
        assert inspected[name]["help"] == parameter.comment, (
            f"{notebook.name}: papermill reads the help of {name!r} as {inspected[name]['help']!r}, the comment is "
            f"{parameter.comment!r}; reword the comment (no '=' in it).")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_parameter_is_read(notebook):
    cells = code_cells(notebook)
    assert sum(is_parameters for is_parameters, _ in cells) == 1
    read = set().union(*(names_read(source) for is_parameters, source in cells if not is_parameters))
    unread = [name for name in read_parameters(notebook) if name not in read]
    assert not unread, (f"{notebook.name}: parameters {unread} are never read by a cell after the parameters cell; "
                        "use them or remove them (and their mention in the header).")
