"""A complete skill in Python with no library: requests on stdin, frames on stdout."""

import json
import os
import sys


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def answer(request):
    rid = request["id"]
    if request["action"] != "count":
        error = {"code": "unknown_action", "message": f"no action {request['action']!r}"}
        return send({"type": "result", "id": rid, "ok": False, "error": error})
    text = request["args"]["text"]
    send({"type": "progress", "id": rid, "message": "counting", "fraction": 0.5})
    print(f"counting {len(text)} characters", file=sys.stderr)  # stderr is the log
    words = len(text.split())
    if words == 0:
        error = {"code": "empty_text", "message": "the text has no words"}
        return send({"type": "result", "id": rid, "ok": False, "error": error})
    output = {"words": words, "characters": len(text)}
    send({"type": "result", "id": rid, "ok": True, "output": output})


# One request, then stdin ends; in serve mode, one request per line until it ends.
if os.environ.get("SKILLHOST_MODE") == "serve":
    for line in iter(sys.stdin.readline, ""):
        answer(json.loads(line))
else:
    answer(json.loads(sys.stdin.readline()))
