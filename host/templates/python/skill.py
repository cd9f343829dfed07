"""The __NAME__ skill: one request line on stdin, frames on stdout (docs/protocol.md).

Log to stderr: every line on stdout must be a frame.
"""

import json
import sys


def send(frame):
    sys.stdout.write(json.dumps(frame) + "\n")
    sys.stdout.flush()


def fail(rid, code, message):
    send({"type": "result", "id": rid, "ok": False, "error": {"code": code, "message": message}})


def count(args):
    words = len(args["text"].split())
    if words == 0:
        raise SkillError("empty_text", "the text has no words")
    return {"words": words}


class SkillError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


ACTIONS = {"count": count}


def main():
    request = json.loads(sys.stdin.readline())
    rid = request["id"]
    action = ACTIONS.get(request["action"])
    if action is None:
        return fail(rid, "unknown_action", f"no action {request['action']!r}")
    try:
        output = action(request.get("args") or {})
    except SkillError as e:
        return fail(rid, e.code, str(e))
    send({"type": "result", "id": rid, "ok": True, "output": output})


if __name__ == "__main__":
    main()
