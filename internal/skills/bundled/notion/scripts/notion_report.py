#!/usr/bin/env python3
"""Publish an experiment report as a Notion page under a parent page the
user chose, through the mlagent gateway. Standard library only; needs
notion_api.py beside it.

    python3 notion_report.py --parent PAGE_ID_OR_LINK report.json

report.json (every key but "title" optional):
    {"title": "EuroSAT 13-band Swin-tiny: 98.7% test accuracy",
     "summary": "One paragraph: what was trained, on what, the headline number.",
     "config": {"model": "microsoft/swin-tiny-patch4-window7-224", "epochs": 15, "lr": 5e-5},
     "metrics": {"columns": ["Metric", "Validation", "Test"], "rows": [["Accuracy", "98.5%", "98.7%"]]},
     "per_class": {"columns": ["Class", "Accuracy", "N"], "rows": [["Forest", "99.6%", 600]]},
     "plots": [{"path": "/data/runs/x/loss.png", "caption": "Training loss"}],
     "links": [{"title": "Checkpoint", "url": "https://huggingface.co/you/model"}],
     "notes": ["Confuses Highway and River at 1.2%."]}
The page is created with the first blocks and filled in batches Notion
accepts (100 blocks, 1000 with table rows, 500 KB a request); a table of
more than 99 rows is split into tables of 99, each with the header.
Prints one JSON line: {"page_id", "url", "blocks", "plots"}.
"""

import argparse
import json
import sys

import notion_api as n


def build_blocks(report, upload=n.upload_file):
    blocks, plots = [], 0
    if report.get("summary"):
        blocks.append(n.block("callout", report["summary"], icon={"type": "emoji", "emoji": "🧪"}))
    if report.get("metrics"):
        blocks.append(n.block("heading_2", "Final metrics"))
        blocks += n.tables(report["metrics"]["columns"], report["metrics"]["rows"])
    if report.get("per_class"):
        blocks.append(n.block("heading_2", "Per-class results"))
        blocks += n.tables(report["per_class"]["columns"], report["per_class"]["rows"])
    for p in report.get("plots", []):
        p = {"path": p} if isinstance(p, str) else p
        if not plots:
            blocks.append(n.block("heading_2", "Plots"))
        ctype = "image/jpeg" if p["path"].lower().endswith((".jpg", ".jpeg")) else "image/png"
        fid = upload(p["path"], ctype)
        img = {"type": "file_upload", "file_upload": {"id": fid}}
        if p.get("caption"):
            img["caption"] = [n.text(p["caption"])]
        blocks.append({"object": "block", "type": "image", "image": img})
        plots += 1
    if report.get("config"):
        blocks.append(n.block("heading_2", "Configuration"))
        blocks += n.tables(["Parameter", "Value"], [[k, json.dumps(v) if not isinstance(v, str) else v]
                                                   for k, v in report["config"].items()])
    if report.get("links"):
        blocks.append(n.block("heading_2", "Links"))
        for link in report["links"]:
            blocks.append(n.block("bulleted_list_item", [n.text(link["title"], link=link["url"])]))
    if report.get("notes"):
        blocks.append(n.block("heading_2", "Notes"))
        blocks += [n.block("bulleted_list_item", s) for s in report["notes"]]
    return blocks, plots


def publish(parent, report):
    blocks, plots = build_blocks(report)
    # Notion's limits per request: 100 blocks in an array, 1000 block
    # elements with nested rows, 500 KB.
    parts = n.batches(blocks) or [[]]
    page = n.call("POST", "/v1/pages", {
        "parent": {"page_id": parent},
        "icon": {"type": "emoji", "emoji": "📈"},
        "properties": {"title": {"title": [n.text(report["title"])]}},
        "children": parts[0],
    })
    for part in parts[1:]:
        n.call("PATCH", f"/v1/blocks/{page['id']}/children", {"children": part})
    return {"page_id": page["id"], "url": page.get("url"), "blocks": len(blocks), "plots": plots}


def main(argv=None):
    p = argparse.ArgumentParser(description="Publish an experiment report to Notion.")
    p.add_argument("--parent", required=True, help="parent page id or link the user chose")
    p.add_argument("report", help="report JSON file")
    a = p.parse_args(argv)
    with open(a.report) as f:
        report = json.load(f)
    if not report.get("title"):
        raise SystemExit("report.json needs a title")
    try:
        print(json.dumps(publish(n.parse_id(a.parent), report)))
    except n.NotionError as e:
        print(f"notion_report: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
