"""`pip install ood-repro` works: the wheel, installed into a fresh virtual environment, runs without the checkout.

The wheel is built from a copy of exactly the files a source distribution holds (so nothing else lying in the
checkout, such as a stale `build/` folder, can slip in), without build isolation and without the network. It is
installed with `pip --python` into a new virtual environment that has no pip and none of the project's packages.
Installing torch and the other dependencies there would need the network and minutes, so the new environment
borrows them: a `.pth` file appends the project environment's site-packages to its `sys.path`. Python processes a
`.pth` file's lines as plain paths, not the `.pth` files of the folder they name, so the project's editable
install of ood_repro (a finder hooked in by its own `.pth`) is not active there: `import ood_repro` can only find
the wheel's copy, and the tests check that it does, from a working directory outside the checkout.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from configparser import ConfigParser
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

REPO = Path(__file__).resolve().parents[1]
SOURCE_FILES = ("setup.py", "settings.ini", "pyproject.toml", "README.md", "LICENSE", "NOTICE")


def run(command: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    "Run `command`; on failure, fail the test with its output."
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    "The wheel, and a fresh virtual environment with it installed."
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "ood_repro", source / "ood_repro", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", work / "dist", source], cwd=work)
    wheels = list((work / "dist").glob("ood_repro-*.whl"))
    assert len(wheels) == 1, wheels

    environment = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", environment], cwd=work)
    python = environment / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=work).stdout.strip())
    assert site_packages.is_relative_to(environment)
    (site_packages / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheels[0]],
        cwd=work)

    outside = work / "elsewhere"  # a working directory outside the checkout, so `import ood_repro` cannot find it
    outside.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("OOD_REPRO_") and key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", OOD_REPRO_WORK=str(work / "work"))
    return {"wheel": wheels[0], "environment": environment, "python": python, "site_packages": site_packages,
            "cwd": outside, "env": env}


def test_wheel_contents(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        entry_points = wheel.read(next(name for name in names if name.endswith(".dist-info/entry_points.txt"))).decode()
    assert "ood_repro/resources/paper_results.csv" in names and "ood_repro/resources/paper_tables.csv" in names
    assert "ood_repro/cli.py" in names and "ood_repro/distributed.py" in names
    assert not any(name.startswith(("nbs/", "tests/")) for name in names)
    assert "ood-repro = ood_repro.cli:main" in entry_points


def test_wheel_carries_the_licence_and_the_attributions(built):
    "Apache-2.0's text, the NOTICE and the data files' attributions ship in .dist-info/licenses; the metadata says so."
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        info = next(name for name in names if name.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        licence = wheel.read(f"{info}/licenses/LICENSE").decode()
        notice = wheel.read(f"{info}/licenses/NOTICE").decode()
        attributions = wheel.read(f"{info}/licenses/ood_repro/resources/NOTICE_RAM_TAGOOD.md").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert licence == (REPO / "LICENSE").read_text() and "Apache License\n                           Version 2.0" in licence
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    # every data file the package ships that it did not create is named in the attributions, with its origin
    for name in ("ram_tag_list.txt", "ram_tag_list_threshold.txt", "ind_tag_list.txt"):
        assert f"ood_repro/resources/{name}" in names and f"`{name}`" in attributions
        assert name in notice
    for name in ("paper_results.csv", "paper_tables.csv"):
        assert name in notice
    assert "ood_repro/resources/NOTICE_RAM_TAGOOD.md" in names  # also next to the files it describes
    assert "github.com/xinyu1205/recognize-anything" in attributions and "github.com/Jarvisgivemeasuit/tagood" in attributions
    headers = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    assert ["License", "Apache-2.0"] in headers
    for name in ("LICENSE", "NOTICE", "ood_repro/resources/NOTICE_RAM_TAGOOD.md"):
        assert ["License-File", name] in headers


def test_project_url_is_the_repository(built):
    "Home page and source are the GitHub repository that settings.ini's `user` and `repo` name."
    settings = ConfigParser()
    settings.read(REPO / "settings.ini")
    cfg = settings["DEFAULT"]
    repository = f"https://github.com/{cfg['user']}/{cfg['repo']}"
    assert cfg["git_url"] == repository
    with zipfile.ZipFile(built["wheel"]) as wheel:
        metadata = wheel.read(next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))).decode()
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Home-page: {repository}" in headers
    assert f"Project-URL: Source, {repository}" in headers and f"Project-URL: Issues, {repository}/issues" in headers


def test_imports_the_installed_wheel(built):
    code = ("import json, ood_repro, ood_repro.cli\n"
            "from importlib import resources\n"
            "data = resources.files('ood_repro').joinpath('resources', 'paper_results.csv')\n"
            "print(json.dumps({'file': ood_repro.__file__, 'cli': ood_repro.cli.__file__, 'version': ood_repro.__version__,"
            " 'data': str(data), 'lines': len(data.read_text().splitlines())}))")
    facts = json.loads(run([built["python"], "-c", code], cwd=built["cwd"], env=built["env"]).stdout)
    settings = ConfigParser()
    settings.read(REPO / "settings.ini")
    for key in ("file", "cli", "data"):
        assert Path(facts[key]).is_relative_to(built["site_packages"]), (key, facts[key])
    assert facts["version"] == settings["DEFAULT"]["version"]
    assert facts["lines"] > 100 and (built["site_packages"] / "ood_repro" / "resources" / "paper_results.csv").is_file()


def test_console_script_lists_every_experiment(built):
    script = built["environment"] / "bin" / "ood-repro"
    assert script.read_text().startswith(f"#!{built['python']}")
    listing = run([script, "list"], cwd=built["cwd"], env=built["env"]).stdout
    names = [line.split()[0] for line in listing.splitlines() if line and not line.startswith(" ")]
    assert names[:2] == ["tab1_tagood", "tab2_tagood"] and len(names) == 15 and "fig4_synood" in names
    assert "live in the source checkout" in listing  # outside a checkout: where the notebooks are
    detail = run([script, "--notebooks", REPO / "nbs", "list", "tab1_tagood"], cwd=built["cwd"], env=built["env"]).stdout
    assert "tau=0.5" in detail


def test_scores_an_array_with_a_baseline(built, tmp_path):
    logits = np.random.default_rng(0).normal(scale=3.0, size=(6, 10))
    np.save(tmp_path / "logits.npy", logits)
    code = ("import json, sys, numpy as np\n"
            "from ood_repro.baselines import make\n"
            "import ood_repro.baselines as module\n"
            "scores = make('energy').score(logits=np.load(sys.argv[1]))\n"
            "print(json.dumps({'scores': scores.tolist(), 'module': module.__file__}))")
    result = json.loads(run([built["python"], "-c", code, tmp_path / "logits.npy"], cwd=built["cwd"],
                            env=built["env"]).stdout)
    assert Path(result["module"]).is_relative_to(built["site_packages"])
    np.testing.assert_allclose(result["scores"], logsumexp(logits, axis=1), rtol=1e-12)
