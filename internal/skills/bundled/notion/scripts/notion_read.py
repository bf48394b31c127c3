#!/usr/bin/env python3
"""Read a Notion page (as Markdown) or a database (as JSON rows) for use as
task input, through the mlagent gateway. Standard library only; needs
notion_api.py beside it.

    python3 notion_read.py page PAGE_ID_OR_LINK        > task.md
    python3 notion_read.py database DB_ID_OR_LINK      > rows.jsonl
"""

import json
import sys

import notion_api as n


PREFIX = {"heading_1": "# ", "heading_2": "## ", "heading_3": "### ", "bulleted_list_item": "- ",
          "numbered_list_item": "1. ", "quote": "> ", "to_do": "- [ ] ", "callout": "> ", "toggle": "- "}


def block_markdown(b, depth=0):
    kind = b.get("type")
    c = b.get(kind) or {}
    pad = "  " * depth
    if kind == "code":
        return [f"{pad}```{c.get('language', '')}", n.plain(c.get("rich_text")), f"{pad}```"]
    if kind == "table":
        rows = [[n.plain(cell) for cell in r["table_row"]["cells"]] for r in n.children(b["id"])]
        if not rows:
            return []
        out = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
        return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]
    if kind == "image":
        src = c.get(c.get("type"), {}).get("url", "")
        return [f"{pad}![{n.plain(c.get('caption'))}]({src})"]
    if kind == "divider":
        return ["---"]
    if kind == "child_page":
        return [f"{pad}(page: {c.get('title')}, id {b['id']})"]
    if kind == "child_database":
        return [f"{pad}(database: {c.get('title')}, id {b['id']})"]
    if kind == "to_do" and c.get("checked"):
        return [f"{pad}- [x] {n.plain(c.get('rich_text'))}"]
    line = pad + PREFIX.get(kind, "") + n.plain(c.get("rich_text"))
    out = [line]
    if b.get("has_children") and kind not in ("child_page", "child_database"):
        for ch in n.children(b["id"]):
            out += block_markdown(ch, depth + 1)
    return out


def prop_value(p):
    t = p.get("type")
    v = p.get(t)
    if t in ("title", "rich_text"):
        return n.plain(v)
    if t == "select" or t == "status":
        return v and v.get("name")
    if t == "multi_select":
        return [x.get("name") for x in v or []]
    if t == "date":
        return v and v.get("start")
    if t == "files":
        return [(f.get(f.get("type")) or {}).get("url") for f in v or []]
    if t == "people":
        return [x.get("name") or x.get("id") for x in v or []]
    if t == "relation":
        return [x.get("id") for x in v or []]
    if t in ("formula", "rollup"):
        return v and v.get(v.get("type"))
    return v


def read_page(pid):
    page = n.call("GET", f"/v1/pages/{pid}")
    title = ""
    for p in page.get("properties", {}).values():
        if p.get("type") == "title":
            title = n.plain(p.get("title"))
    lines = [f"# {title}", ""] if title else []
    for b in n.children(pid):
        lines += block_markdown(b)
    return "\n".join(lines) + "\n"


def read_database(did):
    rows, cursor = [], None
    while True:
        body = {"page_size": 100}
        if cursor:
            body["start_cursor"] = cursor
        r = n.call("POST", f"/v1/databases/{did}/query", body)
        for row in r.get("results", []):
            rows.append(dict({k: prop_value(v) for k, v in row.get("properties", {}).items()}, _id=row.get("id")))
        if not r.get("has_more"):
            return rows
        cursor = r.get("next_cursor")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("page", "database"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "page":
            sys.stdout.write(read_page(n.parse_id(argv[1])))
        else:
            for row in read_database(n.parse_id(argv[1])):
                print(json.dumps(row, ensure_ascii=False))
    except n.NotionError as e:
        print(f"notion_read: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
