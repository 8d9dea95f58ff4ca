"""Helpers shared by the benchmark scripts: timing and writing figures into README.md."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).parent / "README.md"


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], *, repeats: int,
                        warmup: int = 2) -> dict[str, float]:
    """Median seconds of each function, timed in alternation so that drift in the machine's load
    hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    """One line naming the machine the figures come from."""
    return f"{platform.machine()}, {os.cpu_count()} CPU threads, Python {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the README section between `<!-- name:start -->` and `<!-- name:end -->`,
    writing the file atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=README.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, README)


def publish(name: str, body: str, *, write: bool) -> None:
    """Print a benchmark's report and, when `write` (no `--no-write`), put it in README.md as
    section `name`."""
    print(body)
    if write:
        write_section(name, body)


def rss_mb(field: str = "VmHWM") -> float:
    """This process's RSS high-water mark (VmHWM) or current RSS (VmRSS), in MB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak() -> None:
    """Start the RSS high-water mark again from the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
