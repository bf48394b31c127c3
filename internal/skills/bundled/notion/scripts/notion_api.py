#!/usr/bin/env python3
"""The smallest Notion API client: calls go to the mlagent gateway's /notion
route, which adds the user's integration token. Standard library only.

    import notion_api as n
    page = n.call("GET", "/v1/pages/" + page_id)

The sandbox authenticates to the gateway with its own token
($ANTHROPIC_API_KEY); the real Notion token never enters the sandbox. A 403
from the gateway means the write needs the user's approval (see SKILL.md).
"""

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid

VERSION = "2022-06-28"


def base():
    return os.environ.get("MLAGENT_NOTION_URL") or os.environ.get("ANTHROPIC_BASE_URL", "http://127.0.0.1:8790").rstrip("/") + "/notion"


class NotionError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"Notion {status} {code}: {message}")
        self.status, self.code = status, code


def _request(method, path, data=None, content_type="application/json", retries=4):
    headers = {"Authorization": "Bearer " + os.environ["ANTHROPIC_API_KEY"], "Notion-Version": VERSION}
    if data is not None:
        headers["Content-Type"] = content_type
    for attempt in range(retries + 1):
        req = urllib.request.Request(base() + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {}
            # Notion's own errors carry code/message; the gateway's are
            # Anthropic-shaped: {"error": {"type", "message"}}.
            inner = err.get("error") if isinstance(err.get("error"), dict) else {}
            code = err.get("code") or inner.get("type") or "error"
            msg = err.get("message") or inner.get("message") or raw.decode(errors="replace")[:300]
            if e.code in (429, 500, 502, 503, 504) and attempt < retries and code != "api_error":
                time.sleep(float(e.headers.get("Retry-After") or 2 ** attempt))
                continue
            raise NotionError(e.code, code, msg) from None


def call(method, path, body=None):
    """A JSON request; returns the decoded reply or raises NotionError."""
    data = None if body is None else json.dumps(body).encode()
    return _request(method, path, data)


def upload_file(path, content_type="image/png"):
    """Upload a local file (≤ 20 MB) and return its file_upload id, for an
    image or file block: {"type": "file_upload", "file_upload": {"id": id}}."""
    name = os.path.basename(path)
    up = call("POST", "/v1/file_uploads", {"filename": name, "content_type": content_type})
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        content = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    _request("POST", f"/v1/file_uploads/{up['id']}/send", body, f"multipart/form-data; boundary={boundary}")
    return up["id"]


def text(s, bold=False, code=False, link=None):
    """One rich-text object (Notion caps each at 2000 characters)."""
    t = {"type": "text", "text": {"content": str(s)[:2000]}}
    if link:
        t["text"]["link"] = {"url": link}
    if bold or code:
        t["annotations"] = {"bold": bold, "code": code}
    return t


def block(kind, s="", **extra):
    """A text block: paragraph, heading_1..3, bulleted_list_item, quote, ..."""
    content = {"rich_text": [text(s)] if isinstance(s, str) else s}
    content.update(extra)
    return {"object": "block", "type": kind, kind: content}


def table(columns, rows):
    """A table block with a header row; cells are converted to text. Notion
    takes at most 100 rows in one table block of a request: use tables()
    for more."""
    width = len(columns)
    out = []
    for r in [columns] + [list(r) for r in rows]:
        cells = [[text(c)] for c in (list(r) + [""] * width)[:width]]
        out.append({"object": "block", "type": "table_row", "table_row": {"cells": cells}})
    return {"object": "block", "type": "table", "table": {
        "table_width": width, "has_column_header": True, "has_row_header": False, "children": out}}


def tables(columns, rows, max_rows=99):
    """Table blocks holding every row, max_rows rows and the header in each
    (Notion refuses an array of more than 100 elements)."""
    rows = [list(r) for r in rows]
    return [table(columns, rows[i:i + max_rows]) for i in range(0, max(len(rows), 1), max_rows)]


def size(block):
    """The block elements one block counts for in a request: itself and
    its children (a table's rows)."""
    kind = block.get("type")
    return 1 + sum(size(c) for c in (block.get(kind) or {}).get("children", []))


def batches(blocks, max_top=100, max_total=1000, max_bytes=450_000):
    """Split blocks into requests Notion accepts: at most 100 blocks in a
    children array, 1000 block elements (nested ones included) and 500 KB
    of payload in one request."""
    out, cur, total, nbytes = [], [], 0, 0
    for b in blocks:
        n, k = size(b), len(json.dumps(b))
        if cur and (len(cur) >= max_top or total + n > max_total or nbytes + k > max_bytes):
            out.append(cur)
            cur, total, nbytes = [], 0, 0
        cur.append(b)
        total, nbytes = total + n, nbytes + k
    if cur:
        out.append(cur)
    return out


def plain(rich):
    return "".join(r.get("plain_text") or r.get("text", {}).get("content", "") for r in rich or [])


def children(block_id):
    """Every child block of a page or block (follows pagination)."""
    out, cursor = [], None
    while True:
        q = "?page_size=100" + (f"&start_cursor={cursor}" if cursor else "")
        r = call("GET", f"/v1/blocks/{block_id}/children{q}")
        out += r.get("results", [])
        if not r.get("has_more"):
            return out
        cursor = r.get("next_cursor")


def parse_id(s):
    """The page/database id (32 hex digits) in an id or a Notion link."""
    m = re.findall(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}", s)
    if not m:
        raise SystemExit(f"{s!r}: want a Notion id or link")
    return m[-1].replace("-", "")
