"""Fail when `nbdev_export` or `nbdev_clean` would change any file, or when a notebook carries outputs.

Notebooks in nbs/ are the source of ood_repro/: a module edited by hand, or a notebook committed without
exporting or cleaning, shows up here as a difference. Run from the repository root by `make check-clean`.
"""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def snapshot() -> dict[str, str]:
    files = [*Path("nbs").rglob("*.ipynb"), *Path("ood_repro").rglob("*.py")]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if ".ipynb_checkpoints" not in f.parts}


def main() -> int:
    before = snapshot()
    subprocess.run([BIN / "nbdev_export"], check=True)
    subprocess.run([BIN / "nbdev_clean"], check=True)
    after = snapshot()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    with_outputs = sorted(str(nb) for nb in Path("nbs").rglob("*.ipynb")
                          if any(cell.get("outputs") for cell in json.loads(nb.read_text())["cells"]))
    if changed:
        print("nbdev_export/nbdev_clean changed these files (export and clean the notebooks, then commit):")
        print("\n".join(f"  {name}" for name in changed))
    if with_outputs:
        print("These notebooks carry outputs (run nbdev_clean before committing):")
        print("\n".join(f"  {name}" for name in with_outputs))
    if changed or with_outputs:
        return 1
    print(f"check-clean: {len(after)} files, export and clean leave no diff, no notebook carries outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
