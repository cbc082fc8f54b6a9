"""Where studies live: Optuna's RDB storage, a SQLite file in the runs folder by default, or any
database URL SQLAlchemy takes (PostgreSQL, MySQL) for workers on several machines."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import optuna

# The default study database, directly in the user's runs folder (next to the run folders of the
# trials, which live in <runs>/<study name>/).
DEFAULT_DB = "sweeps.db"
# A worker writes a heartbeat for its running trial every HEARTBEAT_S; a trial whose heartbeat is
# older than GRACE_S (its worker was killed, or its machine went away) is marked failed by the next
# worker that starts a trial, so no trial stays "running" forever.
HEARTBEAT_S = 20
GRACE_S = 120
# SQLite: how long a writer waits for another process's write to finish before giving up.
SQLITE_TIMEOUT_S = 60

_cache: dict[str, optuna.storages.BaseStorage] = {}
_lock = threading.Lock()


class StorageError(RuntimeError):
    """The study storage cannot be opened; the message says why."""


def default_url(runs_dir: str | os.PathLike) -> str:
    """The SQLite URL of the default study database of a runs folder."""
    return "sqlite:///" + str(Path(runs_dir).expanduser().resolve() / DEFAULT_DB)


def is_sqlite(url: str) -> bool:
    return str(url).startswith("sqlite:")


def redact(url: str) -> str:
    """The URL with any password hidden (it is shown in the app and stored in run.json)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: show nothing secret
        return str(url).split("@")[-1] if "@" in str(url) else str(url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at `url`, opened once per process (opening checks the schema, which takes a
    moment). A SQLite file's folder is created; StorageError when it cannot be opened."""
    url = str(url)
    with _lock:
        got = _cache.get(url)
        if got is not None:
            return got
        kwargs: dict = {"pool_pre_ping": True}
        if is_sqlite(url):
            path = url[len("sqlite:///"):]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                                     grace_period=GRACE_S)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy raises many kinds; all mean "cannot open"
            raise StorageError(f"cannot open the study storage {redact(url)}: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}") from None
        _cache[url] = storage
        return storage
