"""Durable scans: `scan(..., checkpoint=folder)` keeps its state in `folder/scan.safetensors`,
rewritten atomically every N batches (a temporary file, fsync, then renames; the checkpoint
before it is kept as `scan.prev.safetensors` until the new one is in place). A scan killed at
any moment (SIGKILL included) and started again with the same arguments continues from the last
checkpoint; as batches fold in deterministically, it ends equal to an uninterrupted scan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .scan import SETTINGS, UnitScan

#: what a checkpoint must share with the scan that resumes it
IDENTITY = ("model", "model_fingerprint", "basis", "n_units", *SETTINGS, "shards")


class Checkpoint:
    """The checkpoint folder of one scan whose fresh metadata is `meta`."""

    def __init__(self, folder: str | Path, meta: dict[str, Any]):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / "scan.safetensors"
        self.prev = self.folder / "scan.prev.safetensors"
        self.meta = meta
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"checkpoint={str(folder)!r} is a file; give a folder.")

    def resume(self) -> UnitScan | None:
        """The checkpointed scan to continue (None for a new folder); refused, saying what
        differs, when the folder holds another scan."""
        if not self.folder.exists():
            return None
        for stale in self.folder.glob("*.tmp"):  # left by a kill in the middle of a write
            stale.unlink(missing_ok=True)
        ours = {self.path.name, self.prev.name, "scan.next.safetensors"}
        other = sorted(p.name for p in self.folder.iterdir() if p.name not in ours)
        source = self.path if self.path.exists() else self.prev if self.prev.exists() else None
        if source is None:
            if other:
                raise ValueError(f"The checkpoint folder {self.folder} holds other files "
                                 f"({', '.join(other[:5])}) and no scan: give an empty or new "
                                 "folder.")
            return None
        try:
            old = UnitScan.load(source)
        except ValueError as err:
            kept = f" The checkpoint before it is kept at {self.prev}: delete {source} to " \
                   "resume from it." if source == self.path and self.prev.exists() else ""
            raise ValueError(f"The checkpoint {source} cannot be read: {err}.{kept}") from err
        diff = [f for f in IDENTITY if old.meta.get(f) != self.meta.get(f)]
        if diff:
            raise ValueError(
                f"The checkpoint folder {self.folder} holds another scan: it differs in "
                + ", ".join(f"{f} ({old.meta.get(f)!r} there vs {self.meta.get(f)!r} now)"
                            for f in diff)
                + ". It is left as it is: pass the same arguments to resume it, or give another "
                  "folder.")
        return old

    def write(self, scan: UnitScan, final: bool = False) -> None:
        """Write `scan` as the folder's checkpoint, atomically, keeping the one before."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fresh = scan.save(self.folder / "scan.next.safetensors")
        if self.path.exists():
            os.replace(self.path, self.prev)
        os.replace(fresh, self.path)
        if final:
            self.prev.unlink(missing_ok=True)
