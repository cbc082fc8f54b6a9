"""Where the app looks for runs and how often it polls live ones, from the command line."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RUNS = REPO_ROOT / "sample_runs"
# Relative on purpose: a user's runs live where they start the app, like TensorBoard's --logdir.
USER_RUNS = Path("runs")
DEFAULT_REFRESH_S = 2.0


class SettingsError(ValueError):
    """A command-line option of the app is invalid."""


@dataclass(frozen=True)
class Settings:
    """Folders to scan for runs, in order, and the live-refresh interval."""

    runs_dirs: tuple[Path, ...]
    user_dir: Path = USER_RUNS
    refresh_s: float = DEFAULT_REFRESH_S
    webgl: bool = True

    @property
    def folders(self) -> tuple[Path, ...]:
        """Every folder scanned, without duplicates (user folder and samples included)."""
        seen: dict[str, Path] = {}
        for p in self.runs_dirs:
            seen.setdefault(os.path.abspath(p), p)
        return tuple(seen.values())


def split_dirs(values) -> list[Path]:
    """Paths from repeated and/or comma-separated values; blanks are ignored."""
    out: list[Path] = []
    for v in values or ():
        out.extend(Path(part.strip()).expanduser() for part in str(v).split(",") if part.strip())
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamlit run app.py --",
        description="Training diagnostics dashboard. Options go after `--`.",
        exit_on_error=False,
    )
    p.add_argument("--runs-dir", action="append", default=[], metavar="PATH",
                   help="folder of runs (run directories or TensorBoard logs); repeatable or comma-separated")
    p.add_argument("--no-samples", action="store_true", help="do not list the bundled sample runs")
    p.add_argument("--no-webgl", action="store_true",
                   help="draw long lines as SVG, not WebGL (for browsers without GPU acceleration)")
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_S, metavar="SECONDS",
                   help="how often a live run is re-read (default %(default)s)")
    return p


def parse_args(argv: list[str]) -> tuple[Settings, list[str]]:
    """Settings from the script arguments, plus a list of problems to show (unknown options).

    The user's `runs/` folder is always scanned; the bundled samples unless --no-samples.
    """
    problems: list[str] = []
    try:
        ns, unknown = _parser().parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit) as e:
        raise SettingsError(f"Could not read the app's options {argv!r}: {e}") from None
    if unknown:
        problems.append(f"Ignored unknown option(s) {' '.join(unknown)}; the app understands "
                        f"--runs-dir PATH, --no-samples, --no-webgl and --refresh SECONDS.")
    if not (ns.refresh > 0):
        problems.append(f"--refresh must be a positive number of seconds, got {ns.refresh}; using "
                        f"{DEFAULT_REFRESH_S}.")
        ns.refresh = DEFAULT_REFRESH_S
    dirs = split_dirs(ns.runs_dir) + [USER_RUNS]
    if not ns.no_samples:
        dirs.append(SAMPLE_RUNS)
    return Settings(runs_dirs=tuple(dirs), refresh_s=float(ns.refresh), webgl=not ns.no_webgl), problems


_LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def exposure_note(address: str | None) -> tuple[str, str] | None:
    """("warning" or "note", text) when Streamlit's server.address lets other machines connect:
    unset (every interface: the app was started without this folder's .streamlit/config.toml,
    e.g. from another folder) or a non-loopback address (opened on purpose). None for loopback."""
    address = (address or "").strip().strip("[]")
    why = ("The dashboard has no login, reads any folder it is given and starts trainings; "
           "see \"Opening the dashboard to other machines\" in README.md.")
    if not address:
        return ("warning", "This dashboard listens on every network interface (server.address is not set: "
                           "start it from its own folder, or pass --server.address localhost). " + why)
    if address.lower() in _LOOPBACK_NAMES:
        return None
    try:
        if ipaddress.ip_address(address).is_loopback:
            return None
    except ValueError:
        pass  # a host name other than localhost: reachable from wherever that name resolves
    return ("note", f"Reachable from other machines at {address}. " + why)
