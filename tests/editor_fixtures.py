"""Continue's and Tabby's log lines, written from their documented schemas: Continue's dev data
``autocomplete`` and ``editOutcome`` (schema 0.2.0, and 0.1.0's autocomplete), Tabby's
``{user, ts, event}`` lines with serde's externally tagged event kinds."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"


def continue_base(event: str, schema: str = "0.2.0") -> dict[str, Any]:
    return {
        "eventName": event,
        "schema": schema,
        "timestamp": "2026-11-24T10:00:00.000Z",
        "userId": "u-1",
        "userAgent": "Visual Studio Code/1.99.0 (Continue/1.1.0)",
        "selectedProfileId": "local",
    }


def continue_autocomplete(**over: Any) -> dict[str, Any]:
    event = {
        **continue_base("autocomplete"),
        "disable": False,
        "maxPromptTokens": 1024,
        "debounceDelay": 250,
        "maxSuffixPercentage": 0.2,
        "prefixPercentage": 0.3,
        "multilineCompletions": "auto",
        "slidingWindowPrefixPercentage": 0.75,
        "slidingWindowSize": 500,
        "useCache": True,
        "onlyMyCode": True,
        "useRecentlyEdited": True,
        "accepted": True,
        "time": 212,
        "prefix": PREFIX,
        "suffix": SUFFIX,
        "prompt": PREFIX,  # a FIM-capable Ollama model is sent the prefix as prompt
        "completion": "return a + b",
        "modelProvider": "ollama",
        "modelName": "aicoder:latest",
        "cacheHit": False,
        "filepath": "file:///home/me/project/src/app.py",
        "gitRepo": "https://example.invalid/me/project.git",
        "completionId": str(uuid.uuid4()),
        "uniqueId": "machine-1",
    }
    event.update(over)
    return event


def continue_autocomplete_0_1_0(**over: Any) -> dict[str, Any]:
    event = continue_autocomplete(**over)
    for key in ("eventName", "schema", "userId", "userAgent", "selectedProfileId"):
        event.pop(key)
    event["completionOptions"] = {"temperature": 0.01}
    event["disableInFiles"] = []
    return event


def continue_edit(**over: Any) -> dict[str, Any]:
    event = {
        **continue_base("editOutcome"),
        "modelProvider": "ollama",
        "modelName": "aicoder:latest",
        "modelTitle": "aicoder:latest",
        "prompt": "Make it handle None",
        "completion": "def add(a, b):\n    return (a or 0) + (b or 0)\n",
        "previousCode": "def add(a, b):\n    return a + b\n",
        "newCode": "def add(a, b):\n    return (a or 0) + (b or 0)\n",
        "previousCodeLines": 2,
        "newCodeLines": 2,
        "lineChange": 0,
        "accepted": True,
        "filepath": "file:///home/me/project/src/app.py",
    }
    event.update(over)
    return event


def now_ms() -> int:
    return int(time.time() * 1000)


def tabby(event_kind: str, ts: int | None = None, **body: Any) -> dict[str, Any]:
    return {"user": None, "ts": now_ms() if ts is None else ts, "event": {event_kind: body}}


def tabby_completion(cid: str, ts: int | None = None, text: str = "return a + b") -> dict[str, Any]:
    return tabby(
        "completion",
        ts,
        completion_id=cid,
        language="python",
        prompt=f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
        segments={
            "prefix": PREFIX,
            "suffix": SUFFIX,
            "filepath": "src/app.py",
            "git_url": "https://example.invalid/me/project.git",
        },
        choices=[{"index": 0, "text": text}],
        user_agent="tabby-agent/1.8.0",
    )


def tabby_choice(event_kind: str, cid: str, ts: int | None = None, **more: Any) -> dict[str, Any]:
    return tabby(event_kind, ts, completion_id=cid, choice_index=0, **more)


def new_cid() -> str:
    return f"cmpl-{uuid.uuid4()}"


def append_jsonl(path: Path, *events: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events))
