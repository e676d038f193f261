"""A stand-in for `vllm run-batch -i IN -o OUT --model M` (tests/llm/test_offline_mode.py): reads
OpenAI batch JSONL, writes one answer line per request in vLLM's output format ("answer: <the
last user message>" + " ### tail" that the request's stops cut), like vLLM only when the whole
shard is done; "refuse me" gets vLLM's error line. $FAKE_RUN_BATCH_LOG gets one line per run
(the shard's name); a shard named in $FAKE_RUN_BATCH_FAIL exits 1 after a log line, no output."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    assert args[0] == "run-batch", args
    src, out, model = (args[args.index(flag) + 1] for flag in ("-i", "-o", "--model"))
    with open(os.environ["FAKE_RUN_BATCH_LOG"], "a") as log:
        log.write(Path(src).name + "\n")
    if Path(src).name in os.environ.get("FAKE_RUN_BATCH_FAIL", ""):
        print("INFO starting\nERROR engine died: out of memory", flush=True)
        return 1
    lines = []
    for raw in Path(src).read_text().splitlines():
        req = json.loads(raw)
        body = req["body"]
        assert req["url"] == "/v1/chat/completions" and body["model"] == model, req
        if body["messages"][-1]["content"] == "refuse me":  # vLLM's error line (an ErrorResponse)
            error = {"message": "maximum context length is 1024 tokens", "type": "BadRequestError"}
            lines.append(
                {
                    "id": "vllm-2",
                    "custom_id": req["custom_id"],
                    "response": {"status_code": 400, "request_id": "r", "body": None},
                    "error": {"error": {**error, "code": 400}},
                }
            )
            continue
        text = "answer: " + body["messages"][-1]["content"] + "\n### tail"
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        lines.append(
            {
                "id": "vllm-1",
                "custom_id": req["custom_id"],
                "response": {"status_code": 200, "request_id": "r", "body": reply},
                "error": None,
            }
        )
    Path(out).write_text("".join(json.dumps(x) + "\n" for x in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
