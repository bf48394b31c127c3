#!/usr/bin/env python3
"""A dependency-free stand-in for the `trackio` package's logging API.

When `import trackio` fails (no network to pip install it, or a minimal
image), training code can do

    try:
        import trackio
    except ImportError:
        import trackio_lite as trackio

and keep calling trackio.init / trackio.log / trackio.finish. The rows go to
the same place and in the same SQLite layout as Trackio's own storage, so the
mlagent dashboard, the syncer and Trackio itself read them unchanged:

  database  $TRACKIO_DIR/<project>.db   (default ~/.cache/huggingface/trackio;
            the project name keeps only letters, digits, '-' and '_')
  metrics(id, run_id, timestamp, run_name, step, metrics, log_id, space_id)
            written: timestamp (ISO 8601 UTC, datetime.isoformat()), run_id,
            run_name, step, metrics (JSON object; NaN/inf as the strings
            "NaN", "Infinity", "-Infinity")
  configs(id, run_id, run_name, config, created_at)   one row per run
  system_metrics(id, run_id, timestamp, run_name, metrics, log_id, space_id)
            written by log_system()
  project_metadata(key, value)                        the run's end marker:
            "mlagent/run_status/<run_id>" = "finished" (finish()) or
            "crashed" (an uncaught exception); removed when a run starts or
            resumes. Trackio itself writes none; the mlagent dashboard shows
            a run's status from it.
The database uses WAL journaling and one transaction per call, like Trackio,
so a reader can follow a run live. Only the standard library is used.

Command line (for checks): trackio_lite.py DB_PATH prints a JSON summary
{"runs": {run_name: {"rows": n, "max_step": s, "keys": [...]}}}.
"""

import datetime
import json
import math
import os
import sqlite3
import sys
import uuid

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS metrics (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	timestamp TEXT NOT NULL,
	run_name TEXT NOT NULL,
	step INTEGER NOT NULL,
	metrics TEXT NOT NULL,
	log_id TEXT,
	space_id TEXT
);
CREATE TABLE IF NOT EXISTS configs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	run_name TEXT NOT NULL,
	config TEXT NOT NULL,
	created_at TEXT NOT NULL,
	UNIQUE(run_id)
);
CREATE TABLE IF NOT EXISTS system_metrics (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	run_id TEXT NOT NULL,
	timestamp TEXT NOT NULL,
	run_name TEXT NOT NULL,
	metrics TEXT NOT NULL,
	log_id TEXT,
	space_id TEXT
);
CREATE TABLE IF NOT EXISTS project_metadata (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_metrics_run_step ON metrics(run_id, step);
CREATE INDEX IF NOT EXISTS idx_metrics_run_timestamp ON metrics(run_id, timestamp);
CREATE INDEX IF NOT EXISTS idx_configs_run_name ON configs(run_name);
CREATE INDEX IF NOT EXISTS idx_system_metrics_run_timestamp ON system_metrics(run_id, timestamp);
CREATE UNIQUE INDEX IF NOT EXISTS idx_metrics_log_id ON metrics(log_id) WHERE log_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_system_metrics_log_id ON system_metrics(log_id) WHERE log_id IS NOT NULL;
"""

INSERT_METRIC_SQL = "INSERT INTO metrics (timestamp, run_id, run_name, step, metrics) VALUES (?, ?, ?, ?, ?)"
INSERT_SYSTEM_METRIC_SQL = "INSERT INTO system_metrics (timestamp, run_id, run_name, metrics) VALUES (?, ?, ?, ?)"
UPSERT_CONFIG_SQL = "INSERT OR REPLACE INTO configs (run_id, run_name, config, created_at) VALUES (?, ?, ?, ?)"
STATUS_KEY_PREFIX = "mlagent/run_status/"


def trackio_dir():
    d = os.environ.get("TRACKIO_DIR")
    if d:
        return d
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "trackio")


def db_file_name(project):
    name = "".join(ch for ch in project if ch.isalnum() or ch in "-_")
    return (name or "default") + ".db"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _value(v):
    # Tensors and numpy scalars become plain numbers; Trackio stores
    # non-finite floats as strings because JSON has no NaN.
    if hasattr(v, "item") and callable(v.item):
        try:
            v = v.item()
        except (ValueError, RuntimeError):
            pass
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


def _encode(values):
    return json.dumps({str(k): _value(v) for k, v in values.items()}, allow_nan=False)


class Run:
    """One run in one project database."""

    def __init__(self, project, name=None, config=None, resume="never"):
        self.project = project
        self.name = name or f"run-{uuid.uuid4().hex[:8]}"
        self.path = os.path.join(trackio_dir(), db_file_name(project))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._conn:
            self._conn.executescript(SCHEMA_SQL)
        row = self._conn.execute(
            "SELECT run_id FROM configs WHERE run_name = ? ORDER BY id DESC LIMIT 1", (self.name,)
        ).fetchone()
        if row and resume == "never":
            raise ValueError(f"run {self.name!r} already exists in project {project!r}; pass resume='allow'")
        if row is None and resume == "must":
            raise ValueError(f"run {self.name!r} does not exist in project {project!r}")
        self.run_id = row[0] if row else uuid.uuid4().hex
        self.config = dict(config or {})
        self._step = self._last_step() + 1 if row else 0
        with self._conn:
            self._conn.execute(UPSERT_CONFIG_SQL, (self.run_id, self.name, _encode(self.config), _now()))
            self._conn.execute("DELETE FROM project_metadata WHERE key = ?", (STATUS_KEY_PREFIX + self.run_id,))

    def _last_step(self):
        r = self._conn.execute("SELECT MAX(step) FROM metrics WHERE run_id = ?", (self.run_id,)).fetchone()
        return -1 if r[0] is None else int(r[0])

    def log(self, metrics, step=None):
        if step is None:
            step = self._step
        self._step = int(step) + 1
        with self._conn:
            self._conn.execute(INSERT_METRIC_SQL, (_now(), self.run_id, self.name, int(step), _encode(metrics)))

    def log_system(self, metrics):
        with self._conn:
            self._conn.execute(INSERT_SYSTEM_METRIC_SQL, (_now(), self.run_id, self.name, _encode(metrics)))

    def finish(self, status="finished"):
        if self._conn is not None:
            with self._conn:
                self._conn.execute(
                    "INSERT OR REPLACE INTO project_metadata (key, value) VALUES (?, ?)",
                    (STATUS_KEY_PREFIX + self.run_id, status),
                )
            self._conn.close()
            self._conn = None


_current = None


def _excepthook(kind, value, tb):
    # An uncaught exception ends the script: mark the open run crashed,
    # then report as usual.
    global _current
    if _current is not None:
        try:
            _current.finish("crashed")
        except sqlite3.Error:
            pass
        _current = None
    _previous_excepthook(kind, value, tb)


_previous_excepthook = sys.excepthook
sys.excepthook = _excepthook


def init(project, name=None, config=None, resume="never", **_ignored):
    """Start (or with resume="allow"/"must", continue) a run; like trackio.init."""
    global _current
    if _current is not None:
        _current.finish()
    _current = Run(project, name=name, config=config, resume=resume)
    return _current


def log(metrics, step=None):
    if _current is None:
        raise RuntimeError("call trackio_lite.init() before log()")
    _current.log(metrics, step)


def log_system(metrics):
    if _current is None:
        raise RuntimeError("call trackio_lite.init() before log_system()")
    _current.log_system(metrics)


def finish():
    global _current
    if _current is not None:
        _current.finish()
        _current = None


def summarize(path):
    conn = sqlite3.connect(path)
    try:
        runs = {}
        for run_name, step, js in conn.execute("SELECT run_name, step, metrics FROM metrics ORDER BY id"):
            r = runs.setdefault(run_name, {"rows": 0, "max_step": -1, "keys": set()})
            r["rows"] += 1
            r["max_step"] = max(r["max_step"], step)
            r["keys"].update(json.loads(js))
        return {"runs": {k: {**v, "keys": sorted(v["keys"])} for k, v in runs.items()}}
    finally:
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: trackio_lite.py DB_PATH")
    print(json.dumps(summarize(sys.argv[1])))
