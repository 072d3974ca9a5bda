"""Packaging for ood-repro: every field comes from settings.ini, nbdev 2's single configuration file."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

config = ConfigParser(delimiters=["="])
config.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

licenses = {"apache2": "Apache-2.0"}  # SPDX identifiers
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable"]
readme = Path(__file__).parent / "README.md"

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else "",
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],  # https://github.com/<user>/<repo> of settings.ini (tests/test_packaging.py checks)
    project_urls={"Source": cfg["git_url"], "Issues": f"{cfg['git_url']}/issues"},
    license=licenses[cfg["license"]],
    license_files=cfg["license_files"].split(),  # the wheel's .dist-info/licenses/
    keywords=cfg["keywords"].split(),
    classifiers=[
        f"Development Status :: {statuses[int(cfg['status']) - 1]}",
        f"Intended Audience :: {cfg['audience']}",
        "Natural Language :: English",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=f">={cfg['min_python']}",
    # resources/ holds package data (paper numbers, tag lists), not code: a namespace package ships it.
    packages=setuptools.find_namespace_packages(include=[cfg["lib_path"], f"{cfg['lib_path']}.*"]),
    # resources/toyworld/ (the toy world's trained weights) is a namespace package of its own: it needs its own entry.
    package_data={f"{cfg['lib_path']}.resources": ["*"], f"{cfg['lib_path']}.resources.toyworld": ["*"]},
    include_package_data=True,
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split()},
    entry_points={"console_scripts": cfg.get("console_scripts", "").split()},
    zip_safe=False,
)
