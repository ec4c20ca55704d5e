"""The console's progress lines of a local run, from ML Metadata while LocalDagRunner runs.

LocalDagRunner has no hooks, so a thread reads the run's executions from the metadata store
every half second, read-only: a component is "running" once the runner registers its execution
and "done" once the execution is COMPLETE or CACHED, timed by the store. One read-only
connection serves every poll, opened once the store exists. Each read is one short transaction;
ml-metadata's SQLite source waits and retries when a reader holds the database
(sqlite_metadata_source.cc, WaitThenRetry), so polling never fails the runner's writes.
"""

from __future__ import annotations

import os
import threading

from cli.common import log

_WAITING = ("NEW", "RUNNING")
_DONE = {"COMPLETE": "executed", "CACHED": "cached"}


class RunProgress:
    """`with RunProgress(metadata_path, pipeline_name): run_local(config)`."""

    def __init__(self, metadata_path: str, pipeline_name: str, interval: float = 0.5) -> None:
        self._metadata_path = metadata_path
        self._pipeline_name = pipeline_name
        self._interval = interval
        self._store = None
        self._earlier = frozenset()
        if os.path.exists(metadata_path):
            from report.summary import run_ids

            self._store = self._open()
            self._earlier = run_ids(self._store, pipeline_name)
        self._running: set[str] = set()
        self._finished: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-progress", daemon=True)

    def __enter__(self) -> RunProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def _open(self):
        from report.summary import open_store

        return open_store(self._metadata_path)

    def poll(self) -> None:
        """Prints what changed since the last poll; a store it cannot read yet is skipped."""
        from report.summary import execution_states

        try:
            if self._store is None:
                if not os.path.exists(self._metadata_path):
                    return
                self._store = self._open()
            states = execution_states(self._store, self._pipeline_name, self._earlier)
        except Exception as e:  # noqa: BLE001 - the store may be mid-creation; next poll
            log.debug("progress: metadata not readable yet: %s", e)
            return
        for node, state, seconds in states:
            if node in self._finished:
                continue
            if state in _WAITING and node not in self._running:
                self._running.add(node)
                log.info("[pipeline] %s: running", node)
            elif state in _DONE:
                self._finished.add(node)
                log.info("[pipeline] %s: done in %.1fs (%s)", node, seconds, _DONE[state])
            elif state not in _WAITING:
                self._finished.add(node)
                log.info("[pipeline] %s: %s after %.1fs", node, state.lower(), seconds)
