"""What `pip install .` puts on a new machine: every module, the templates, the rule pack, the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_everything_the_service_needs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(tmp_path.glob("duban-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for d in ("rules", "scheduler", "notifications") for p in (ROOT / d).rglob("*")
               if p.suffix in (".py", ".j2", ".yaml", ".mako") and "__pycache__" not in p.parts}
    missing = sorted(sources - names)
    assert not missing, f"not in the wheel: {missing}"
