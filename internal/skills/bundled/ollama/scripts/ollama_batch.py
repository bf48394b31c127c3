#!/usr/bin/env python3
"""Run many small prompts through an Ollama server, with retries and a
JSON-schema check of every answer. Standard library only.

Input is JSON lines, one task per line:
    {"id": "img-0001", "prompt": "Label this review: ...", "images": ["a.png"]}
("images" is optional: paths read and sent base64-encoded, for vision models
such as qwen2.5vl or llava). Output is JSON lines, one result per task:
    {"id": ..., "ok": true, "output": <parsed JSON or text>, "attempts": 1,
     "eval_count": 12}
    {"id": ..., "ok": false, "error": "...", "attempts": 4}
The last line on stdout is a JSON summary:
    {"done": n, "failed": m, "skipped": k, "output": "results.jsonl"}

With --schema FILE the schema is sent as Ollama's structured-output "format"
and each answer is checked here too (small models do not always obey it);
an answer that is not JSON or does not match is asked again, with the
reason, up to --retries times. Connection errors, 429 and 5xx replies are
retried with exponential backoff. A missing model stops the batch at once.
Tasks already answered ok in --output are skipped, so a killed batch can be
re-run with the same command.

    python3 ollama_batch.py --model qwen2.5:3b --input tasks.jsonl \
        --output results.jsonl --schema label.schema.json --concurrency 4
"""

import argparse
import base64
import concurrent.futures
import json
import os
import random
import re
import sys
import threading
import time
import urllib.error
import urllib.request


class SchemaError(ValueError):
    """An instance does not match its schema; str() says where and why."""


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate(instance, schema, where="$"):
    """Check instance against the JSON Schema subset structured outputs use:
    type, enum, const, properties, required, additionalProperties, items,
    min/maxItems, minimum/maximum, min/maxLength, pattern, anyOf. Other
    keywords (title, description, $schema) are ignored. Raises SchemaError."""
    if schema is True or schema == {}:
        return
    if schema is False:
        raise SchemaError(f"{where}: no value is allowed here")
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        for name in types:
            if name not in _TYPES:
                raise SchemaError(f"{where}: unknown type {name!r} in schema")
        if not any(_TYPES[name](instance) for name in types):
            raise SchemaError(f"{where}: got {type(instance).__name__} {_short(instance)}; want {'/'.join(types)}")
    if "enum" in schema and instance not in schema["enum"]:
        raise SchemaError(f"{where}: got {_short(instance)}; want one of {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        raise SchemaError(f"{where}: got {_short(instance)}; want {schema['const']!r}")
    if "anyOf" in schema:
        reasons = []
        for sub in schema["anyOf"]:
            try:
                validate(instance, sub, where)
                break
            except SchemaError as e:
                reasons.append(str(e))
        else:
            raise SchemaError(f"{where}: matches none of anyOf ({'; '.join(reasons)})")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                raise SchemaError(f"{where}: missing required key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                validate(value, props[key], f"{where}.{key}")
            elif extra is False:
                raise SchemaError(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                validate(value, extra, f"{where}.{key}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            raise SchemaError(f"{where}: {len(instance)} items; want at least {schema['minItems']}")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            raise SchemaError(f"{where}: {len(instance)} items; want at most {schema['maxItems']}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(instance):
                validate(item, schema["items"], f"{where}[{i}]")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            raise SchemaError(f"{where}: {instance} < minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            raise SchemaError(f"{where}: {instance} > maximum {schema['maximum']}")
    if isinstance(instance, str):
        if "minLength" in schema and len(instance) < schema["minLength"]:
            raise SchemaError(f"{where}: string shorter than {schema['minLength']}")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            raise SchemaError(f"{where}: string longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            raise SchemaError(f"{where}: {_short(instance)} does not match {schema['pattern']!r}")


def _short(v):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


class Fatal(Exception):
    """An error no retry can mend (unknown model, bad request)."""


class Transient(Exception):
    """An error worth retrying after a pause (connection, 429, 5xx)."""


def chat(host, body, timeout):
    """POST /api/chat (non-streamed) and return the decoded reply."""
    req = urllib.request.Request(
        host.rstrip("/") + "/api/chat",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = _error_text(e)
        if e.code == 429 or e.code >= 500:
            raise Transient(f"HTTP {e.code}: {detail}") from None
        if e.code == 404:
            raise Fatal(f"model {body['model']!r} not found on {host}: {detail} "
                        f"(pull it first: ollama pull {body['model']})") from None
        raise Fatal(f"HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as e:
        raise Transient(f"{type(e).__name__}: {e}") from None


def _error_text(e):
    try:
        raw = e.read(4096)
        return json.loads(raw).get("error") or raw.decode(errors="replace")
    except Exception:  # the body is a courtesy; the status already says enough
        return e.reason


def run_task(task, args, schema, stop):
    """Answer one task; returns its result line (never raises except Fatal)."""
    message = {"role": "user", "content": task["prompt"]}
    if task.get("images"):
        try:
            message["images"] = [_read_b64(p) for p in task["images"]]
        except (OSError, TypeError) as e:
            # This task fails alone; the batch goes on.
            return {"id": task["id"], "ok": False, "error": f"image: {e}", "attempts": 0}
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append(message)
    attempts, last_error = 0, ""
    while attempts <= args.retries and not stop.is_set():
        attempts += 1
        body = {"model": args.model, "messages": messages, "stream": False,
                "options": {"temperature": args.temperature}}
        if schema is not None:
            body["format"] = schema
        try:
            reply = chat(args.host, body, args.timeout)
        except Transient as e:
            last_error = str(e)
            time.sleep(args.backoff * (2 ** (attempts - 1)) * (1 + random.random() / 2))
            continue
        content = (reply.get("message") or {}).get("content", "")
        result = {"id": task["id"], "ok": True, "attempts": attempts,
                  "eval_count": reply.get("eval_count")}
        if schema is None:
            result["output"] = content
            return result
        try:
            value = json.loads(content)
            validate(value, schema)
        except (json.JSONDecodeError, SchemaError) as e:
            last_error = f"answer rejected: {e}"
            # Ask again with the reason: small models usually fix it.
            messages = messages + [
                {"role": "assistant", "content": content},
                {"role": "user", "content": f"That reply was not valid: {e}. "
                                            "Reply again with only JSON matching the schema."},
            ]
            continue
        result["output"] = value
        return result
    return {"id": task["id"], "ok": False, "error": last_error or "stopped", "attempts": attempts}


def _read_b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def read_tasks(path):
    tasks, seen = [], set()
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            t = json.loads(line)
            if not isinstance(t, dict) or "prompt" not in t:
                raise SystemExit(f"{path}:{n}: each line needs a \"prompt\"")
            t.setdefault("id", str(n))
            t["id"] = str(t["id"])
            if t["id"] in seen:
                raise SystemExit(f"{path}:{n}: duplicate id {t['id']!r}")
            seen.add(t["id"])
            tasks.append(t)
    return tasks


def done_ids(path):
    done = set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill; the task is simply redone
                if isinstance(r, dict) and r.get("ok"):
                    done.add(str(r.get("id")))
    return done


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--schema", help="JSON Schema file the answers must match")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--host", default=os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434"))
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--backoff", type=float, default=1.0, help="first retry pause in seconds")
    args = p.parse_args(argv)
    if not args.host.startswith(("http://", "https://")):
        args.host = "http://" + args.host  # OLLAMA_HOST is often host:port
    schema = None
    if args.schema:
        with open(args.schema) as f:
            schema = json.load(f)
    tasks = read_tasks(args.input)
    skip = done_ids(args.output)
    todo = [t for t in tasks if t["id"] not in skip]
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"done": 0, "failed": 0, "skipped": len(tasks) - len(todo)}
    fatal = None
    with open(args.output, "a") as out, \
            concurrent.futures.ThreadPoolExecutor(max(1, args.concurrency)) as pool:
        futures = [pool.submit(run_task, t, args, schema, stop) for t in todo]
        for fut in concurrent.futures.as_completed(futures):
            try:
                r = fut.result()
            except Fatal as e:
                fatal = str(e)
                stop.set()
                continue
            with lock:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")
                out.flush()
                counts["done" if r["ok"] else "failed"] += 1
    summary = dict(counts, output=args.output)
    if fatal:
        summary["error"] = fatal
        print(f"ollama_batch: {fatal}", file=sys.stderr)
    print(json.dumps(summary))
    return 1 if fatal or counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
