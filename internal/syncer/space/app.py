"""Trackio Space app written by mlagent's syncer.

mlagent uploads Trackio rows as JSON-lines chunks to the dataset named by
TRACKIO_DATASET_ID (mlagent/<project>/<table>/<first>-<last>.jsonl). This app
imports them into Trackio's own SQLite databases, keeping the original row
ids so a chunk imported twice adds nothing, then serves trackio.show().

`python app.py --import-only CHUNK_DIR TRACKIO_DIR` runs only the importer
(no Hub access, no trackio needed); mlagent's tests use it.
"""

import glob
import json
import os
import sqlite3
import sys
import threading
import time

TABLES = ("metrics", "system_metrics", "configs")


def _columns(conn, table):
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _ensure_schema(conn):
    conn.executescript(
        """
        CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
            step INTEGER NOT NULL, metrics TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS configs (id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL, run_name TEXT NOT NULL, config TEXT NOT NULL,
            created_at TEXT NOT NULL, UNIQUE(run_id));
        CREATE TABLE IF NOT EXISTS system_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL, timestamp TEXT NOT NULL, run_name TEXT NOT NULL,
            metrics TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS mlagent_imported (path TEXT PRIMARY KEY);
        """
    )


def import_chunks(chunk_root, trackio_dir):
    """Import every chunk under chunk_root/mlagent not imported yet."""
    os.makedirs(trackio_dir, exist_ok=True)
    imported = 0
    for project_dir in sorted(glob.glob(os.path.join(chunk_root, "mlagent", "*"))):
        project = os.path.basename(project_dir)
        conn = sqlite3.connect(os.path.join(trackio_dir, project + ".db"), timeout=30)
        try:
            _ensure_schema(conn)
            for table in TABLES:
                cols = _columns(conn, table)
                for path in sorted(glob.glob(os.path.join(project_dir, table, "*.jsonl"))):
                    rel = os.path.relpath(path, chunk_root)
                    if conn.execute("SELECT 1 FROM mlagent_imported WHERE path = ?", (rel,)).fetchone():
                        continue
                    with open(path) as f:
                        for line in f:
                            if not line.strip():
                                continue
                            row = json.loads(line)
                            if table == "configs":
                                conn.execute(
                                    "INSERT OR REPLACE INTO configs (id, run_id, run_name, config, created_at) VALUES (?, ?, ?, ?, ?)"
                                    if "run_id" in cols else
                                    "INSERT OR REPLACE INTO configs (id, run_name, config, created_at) VALUES (?, ?, ?, ?)",
                                    ((row["id"], row["run_id"]) if "run_id" in cols else (row["id"],))
                                    + (row["run_name"], json.dumps(row["config"]), row["created_at"]),
                                )
                                continue
                            names = ["id", "timestamp", "run_name", "metrics"]
                            values = [row["id"], row["timestamp"], row["run_name"], json.dumps(row["metrics"])]
                            if "run_id" in cols:
                                names.append("run_id")
                                values.append(row["run_id"])
                            if table == "metrics":
                                names.append("step")
                                values.append(row["step"])
                            conn.execute(
                                f"INSERT OR IGNORE INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                                values,
                            )
                            imported += 1
                    conn.execute("INSERT INTO mlagent_imported (path) VALUES (?)", (rel,))
                    conn.commit()
        finally:
            conn.close()
    return imported


def _follow_dataset(dataset_id, trackio_dir, every=30):
    from huggingface_hub import snapshot_download

    while True:
        try:
            root = snapshot_download(dataset_id, repo_type="dataset", allow_patterns=["mlagent/**"],
                                     token=os.environ.get("HF_TOKEN"))
            import_chunks(root, trackio_dir)
        except Exception as e:  # keep serving what we have
            print("mlagent import failed:", e, file=sys.stderr)
        time.sleep(every)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--import-only":
    print(import_chunks(sys.argv[2], sys.argv[3]))
    sys.exit(0)

import trackio  # noqa: E402
from trackio.utils import TRACKIO_DIR  # noqa: E402

dataset = os.environ.get("TRACKIO_DATASET_ID")
if dataset:
    threading.Thread(target=_follow_dataset, args=(dataset, str(TRACKIO_DIR)), daemon=True).start()
trackio.show()
