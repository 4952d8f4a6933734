"""Build hook: ship recipes/, slurm/ and examples/ in the wheel as package data of kgov_train.

The folders stay at the top of the checkout. pyproject.toml maps each onto an asset package,
``kgov_train._assets.<folder>`` ([tool.setuptools.package-dir]), and says which of its files go
in ([tool.setuptools.package-data]). ``packages.find`` cannot discover those packages (there is
no kgov_train/_assets/ folder), so this build_py adds them, with their subfolders (recipe groups,
data sets) so that setuptools does not warn about data in undeclared packages. A wheel then
holds kgov_train/_assets/{recipes,slurm,examples}/, which kgov_train/assets.py prefers; an
editable install has none and uses the checkout's folders.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

ASSET_PREFIX = "kgov_train._assets."


class build_py(_build_py):
    def finalize_options(self) -> None:
        super().finalize_options()
        packages = list(self.packages or [])
        for pkg in sorted(p for p in (self.distribution.package_dir or {}) if p.startswith(ASSET_PREFIX)):
            src = self.get_package_dir(pkg)
            found = [pkg]
            for dirpath, dirnames, _ in os.walk(src):
                dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and not d.startswith(("_", ".")))
                rel = os.path.relpath(dirpath, src)
                if rel != ".":
                    found.append(".".join([pkg, *rel.split(os.sep)]))
            packages += [p for p in found if p not in packages]
        self.packages = packages


setup(cmdclass={"build_py": build_py})
