"""Fetch transformers' common model tests for the installed transformers (``make install`` runs this).

transformers' maintainers test every model with ``ModelTesterMixin`` (``tests/test_modeling_common.py``) and
``ConfigTester`` (``tests/test_configuration_common.py``). Both ship in transformers' source distribution on
PyPI, not in the wheel. This script downloads the sdist of the *installed* transformers version
(``pip download --no-binary :all:``), extracts those two files into ``<venv>/transformers_common_tests/``
as the package ``transformers_tests`` (a name that does not clash with this repository's ``tests``), and adds
the three modules they import that the sdist does not ship, written by this repository
(``tests/transformers_common/stub_*.py``):

* ``exporters/test_export.py``: ``ExportTesterMixin``, empty (the export tests are not in the sdist, so
  they are not run here);
* ``generation/test_utils.py``: ``GenerationTesterMixin``, empty (SRHA cannot generate);
* ``utils/test_configuration_utils.py``: ``config_common_kwargs``.

Idempotent: the folder records the transformers version it was fetched for (``VERSION``) and the stubs it
was built with; when both match, nothing is downloaded. A different installed transformers (or changed
stubs) rebuilds it. ``tests/test_transformers_common.py`` runs the suites from it.

Usage: ``python tests/transformers_common/fetch.py [--dest DIR] [--sdist FILE]``
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "transformers_tests"
# the sdist's files, copied as they are (paths inside the sdist's tests/ folder)
UPSTREAM_FILES = ("test_modeling_common.py", "test_configuration_common.py")
# the modules they import relatively that the sdist lacks: our stub -> its path in the package
STUBS = {
    "stub_export.py": "exporters/test_export.py",
    "stub_generation.py": "generation/test_utils.py",
    "stub_configuration_utils.py": "utils/test_configuration_utils.py",
}
PACKAGE_DOC = '"""transformers\' common model tests, fetched by tests/transformers_common/fetch.py; do not edit."""\n'


def default_dest() -> Path:
    """``<venv>/transformers_common_tests``: next to the transformers it was fetched for."""
    return Path(sys.prefix) / "transformers_common_tests"


def fingerprint(transformers_version: str) -> str:
    """What the folder was built from: the transformers version, then a hash of our stubs."""
    digest = hashlib.sha256()
    for name in sorted(STUBS):
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return f"{transformers_version}\n{digest.hexdigest()[:16]}\n"


def is_current(dest: Path, transformers_version: str) -> bool:
    stamp = dest / "VERSION"
    complete = all((dest / PACKAGE / name).is_file() for name in (*UPSTREAM_FILES, *STUBS.values()))
    return complete and stamp.is_file() and stamp.read_text() == fingerprint(transformers_version)


def download_sdist(transformers_version: str, into: Path) -> Path:
    """``pip download`` of the transformers sdist of this version (no dependencies, no wheel)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"transformers=={transformers_version}", "-d", str(into)]  # fmt: skip
    subprocess.run(command, check=True)
    found = sorted(into.glob(f"transformers-{transformers_version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip download left no transformers-{transformers_version}.tar.gz in {into}: {sorted(p.name for p in into.iterdir())}")
    return found[0]


def extract(sdist: Path, transformers_version: str, package: Path) -> None:
    """Copy the upstream files out of the sdist into ``package`` (read by member name, nothing else unpacked)."""
    prefix = f"transformers-{transformers_version}/tests/"
    with tarfile.open(sdist) as archive:
        for name in UPSTREAM_FILES:
            try:
                member = archive.getmember(prefix + name)
            except KeyError:
                raise SystemExit(f"{sdist.name} has no {prefix + name}") from None
            source = archive.extractfile(member)
            if source is None:
                raise SystemExit(f"{sdist.name}: {prefix + name} is not a regular file")
            (package / name).write_bytes(source.read())


def build(dest: Path, transformers_version: str, sdist: Path | None = None) -> None:
    """(Re)build ``dest`` from the sdist: into a temporary sibling, then swapped in whole."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".transformers_common_tests.") as work:
        work = Path(work)
        if sdist is None:
            sdist = download_sdist(transformers_version, work / "download")
        staged = work / "staged"
        package = staged / PACKAGE
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(PACKAGE_DOC)
        extract(sdist, transformers_version, package)
        for stub, target in STUBS.items():
            path = package / target
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").write_text(PACKAGE_DOC)
            shutil.copyfile(HERE / stub, path)
        (staged / "VERSION").write_text(fingerprint(transformers_version))
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=default_dest(), help="where to build (default: %(default)s)")
    parser.add_argument("--sdist", type=Path, help="a transformers sdist already downloaded (its version must be the installed one)")
    args = parser.parse_args(argv)
    transformers_version = installed_version("transformers")
    if is_current(args.dest, transformers_version):
        print(f"transformers {transformers_version} common tests: up to date in {args.dest}")
        return 0
    build(args.dest, transformers_version, args.sdist)
    print(f"transformers {transformers_version} common tests: fetched into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
