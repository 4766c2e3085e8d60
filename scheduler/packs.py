"""The rule pack(s) bundled with duban."""

from __future__ import annotations

from importlib import resources


def bundled_pack_paths() -> list[str]:
    folder = resources.files("rules.packs")
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".yaml"))
