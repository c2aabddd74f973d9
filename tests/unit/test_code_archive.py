"""The packaged model's code: one zip that Python imports the platform from, the same bytes for
the same code (so a served version's sha256 names its code)."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from pipelines.tracking.registry import CODE_PACKAGES, PACKAGE_ROOT, write_code_archive


def test_the_code_archive_is_every_module_byte_stable_and_importable(tmp_path):
    first = write_code_archive(tmp_path / "a.zip")
    second = write_code_archive(tmp_path / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    expected = sorted(p.relative_to(PACKAGE_ROOT).as_posix() for package in CODE_PACKAGES
                      for p in (PACKAGE_ROOT / package).rglob("*.py")
                      if "__pycache__" not in p.parts)
    assert names == expected and "pipelines/tracking/pyfunc_model.py" in names
    # imported from the zip alone: the checkout is not on the path of this interpreter
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import pipelines.tracking.registry"
              " as r; print(r.__file__); print(r.MODEL_FILE)")
    proc = subprocess.run([sys.executable, "-I", "-c", script, str(first)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(line.startswith(str(first)) for line in proc.stdout.split()), proc.stdout
