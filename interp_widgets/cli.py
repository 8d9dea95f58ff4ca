"""The `interp-widgets` command: `demo` opens the teaching notebooks in JupyterLab; `info` reports
versions, the device and the demo model."""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ["interp-widgets", "torch", "transformer-lens", "transformers", "anywidget",
            "ipywidgets", "jupyterlab"]


def bundled_notebooks_dir() -> Path:
    """The teaching notebooks: `notebooks/` of a source checkout, else the copy a wheel installs
    under `<prefix>/share/interp-widgets/notebooks`."""
    source = Path(__file__).resolve().parents[1] / "notebooks"
    if (source / "quickstart.ipynb").exists():
        return source
    for prefix in (sys.prefix, sys.base_prefix):
        shared = Path(prefix) / "share" / "interp-widgets" / "notebooks"
        if (shared / "quickstart.ipynb").exists():
            return shared
    raise FileNotFoundError("The bundled notebooks were not found: reinstall interp-widgets.")


def copy_notebooks(dest: Path) -> list[str]:
    """Copy the bundled notebooks into `dest`. A notebook already there and different (a user's
    edited copy) is kept, never overwritten. Returns one line per notebook saying what happened."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = []
    for nb in sorted(bundled_notebooks_dir().glob("*.ipynb")):
        target = dest / nb.name
        if not target.exists():
            shutil.copy2(nb, target)
            lines.append(f"copied  {target}")
        elif filecmp.cmp(nb, target, shallow=False):
            lines.append(f"current {target}")
        else:
            lines.append(f"kept    {target} (your edited copy; delete it to get the bundled one)")
    return lines


def demo(args: argparse.Namespace) -> int:
    dest = Path(args.dir).expanduser().resolve()
    for line in copy_notebooks(dest):
        print(line)
    cmd = [sys.executable, "-m", "jupyter", "lab", "quickstart.ipynb",
           f"--ServerApp.root_dir={dest}", f"--port={args.port}", "--ServerApp.ip=127.0.0.1"]
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers often run as root; JupyterLab refuses otherwise
    cmd += args.jupyter_args
    print("starting:", " ".join(cmd), flush=True)
    return run_forwarding_sigterm(cmd, cwd=dest)


def run_forwarding_sigterm(cmd: list[str], cwd: Path) -> int:
    """Run `cmd` to its end and return its exit code. A SIGTERM to this process (a service
    manager, `kill`) is passed on to the child, so JupyterLab shuts down instead of being left
    running without its parent; Ctrl-C reaches both through the terminal's process group."""
    proc = subprocess.Popen(cmd, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def info_lines() -> list[str]:
    """What `interp-widgets info` prints: versions, device, demo model size and metrics."""
    from . import demo as demo_pkg
    from .model import available_devices

    lines = [f"python            {sys.version.split()[0]}"]
    for pkg in PACKAGES:
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            version = "not installed"
        lines.append(f"{pkg:<18}{version}")
    lines.append(f"{'device':<18}{available_devices()[0]} (available: "
                 f"{', '.join(available_devices())})")
    model_dir = demo_pkg.MODEL_DIR
    files = [p for p in model_dir.glob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    lines.append(f"{'demo model':<18}{model_dir} ({size / 1e6:.1f} MB in {len(files)} files)")
    config = model_dir / "config.json"
    if config.exists():
        cfg = json.loads(config.read_text())
        lines.append(f"{'  architecture':<18}GPT-2: {cfg.get('n_layer')} layers, "
                     f"{cfg.get('n_head')} heads, d_model {cfg.get('n_embd')}, "
                     f"vocab {cfg.get('vocab_size')}, context {cfg.get('n_positions')}")
    log = model_dir / "training_log.json"
    if log.exists():
        from .demo.tasks import TARGETS

        metrics = json.loads(log.read_text()).get("final_metrics", {})
        for key, value in metrics.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            if key in TARGETS:
                target, met = TARGETS[key]
                shown += f"  (target {target}: {'met' if met(value) else 'not met'})"
            lines.append(f"  {key:<22}{shown}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interp-widgets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="copy the teaching notebooks and open JupyterLab")
    p_demo.add_argument("--dir", default="interp-widgets-notebooks",
                        help="where to copy the notebooks (default: ./interp-widgets-notebooks)")
    p_demo.add_argument("--port", type=int, default=8888, help="JupyterLab's port (default 8888)")
    p_demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p_demo.add_argument("jupyter_args", nargs="*", help="after --: more options for jupyter lab")
    sub.add_parser("info", help="print versions, the device and the demo model's metrics")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    print("\n".join(info_lines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
