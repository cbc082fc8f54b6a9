"""Owners of registered hooks, so that no hook outlives the recorder (fastai's Hook/Hooks idea)."""

from __future__ import annotations


class HookSet:
    """Holds RemovableHandles; remove() is idempotent and the set works as a context manager."""

    def __init__(self):
        self._handles = []

    def add(self, handle) -> None:
        self._handles.append(handle)

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def __len__(self) -> int:
        return len(self._handles)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
