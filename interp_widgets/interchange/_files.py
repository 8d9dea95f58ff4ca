"""Atomic writes and the resume check shared by the cache writers."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def publish(tmp: str | Path, path: Path) -> None:
    """Give the finished temporary file `tmp` the usual mode (mkstemp makes it private) and
    rename it to `path`."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, json.dumps(obj, indent=2).encode())


def saved_settings(path: Path, settings: dict[str, Any], what: str) -> dict[str, Any]:
    """The JSON state in `path`, after checking that it was written with `settings`; refuses
    with every setting that differs."""
    old = json.loads(path.read_text("utf-8"))
    diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if diff:
        detail = "; ".join(f"{k}: folder {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path.parent} holds {what} written with other settings ({detail}). "
                         "Use the same settings, or another path.")
    return old
