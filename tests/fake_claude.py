#!/usr/bin/env python3
"""A stand-in for Claude Code in tests: one turn that writes what Claude
Code writes under CLAUDE_CONFIG_DIR, in its layout.

    fake_claude.py -p PROMPT (--session-id UUID | --resume UUID) [--print-memory]

- Session ids must be UUIDs; --session-id refuses one whose transcript
  exists, --resume one whose transcript does not ("No conversation found").
- projects/<project>/<id>.jsonl: the transcript (user and assistant lines);
  <project> is the working directory with every character outside
  [A-Za-z0-9] replaced by '-' (longer than 200: cut, plus a djb2 hash).
- projects/<project>/<id>/subagents/agent-<n>.jsonl (+ .meta.json) and
  projects/<project>/<id>/tool-results/toolu_<n>.txt.
- Auto-memory: autoMemoryDirectory from the local settings
  (<cwd>/.claude/settings.local.json), else from settings.json, else
  projects/<project>/memory/; none with CLAUDE_CODE_DISABLE_AUTO_MEMORY=1.
  FAKE_CLAUDE_REMEMBER=fact adds "- fact" to MEMORY.md and a topic file.
- todos/<id>-agent-<id>.json, file-history/<id>/<hash>@v<n>,
  debug/<id>.txt (appended) and the symlink debug/latest, session-env/<id>/.
- .claude.json rewritten whole (numStartups + 1, projects[cwd], other keys
  kept), one line appended to history.jsonl, shell-snapshots/ and
  paste-cache/ entries.
- FAKE_CLAUDE_BYTES=n makes the tool result and debug log n bytes (default 2000);
  FAKE_CLAUDE_RANDOM=1 makes them random text (as compressible as base64).
"""

import json
import os
import re
import sys
import time
import uuid


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def djb2(s):
    h = 0
    for ch in s:
        h = ((h << 5) - h + ord(ch)) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return abs(h)


def base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def project_name(cwd):
    name = "".join(c if c.isascii() and c.isalnum() else "-" * (len(c.encode("utf-16-le")) // 2) for c in cwd)
    if len(name) <= 200:
        return name
    return name[:200] + "-" + base36(djb2(cwd))


def read_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def main(argv):
    prompt, sid, resume, print_memory = None, None, False, False
    args = iter(argv)
    for a in args:
        if a == "-p":
            prompt = next(args)
        elif a == "--session-id":
            sid = next(args)
        elif a == "--resume":
            sid, resume = next(args), True
        elif a == "--print-memory":
            print_memory = True
        else:
            fail(f"unknown argument {a}")
    if sid is None:
        sid = str(uuid.uuid4())
    try:
        uuid.UUID(sid)
    except ValueError:
        fail("Error: Invalid session ID. Must be a valid UUID.")
    home = os.environ["CLAUDE_CONFIG_DIR"]
    cwd = os.getcwd()
    project = os.path.join(home, "projects", project_name(cwd))
    transcript = os.path.join(project, f"{sid}.jsonl")
    if resume and not os.path.isfile(transcript):
        fail(f"No conversation found with session ID: {sid}")
    if not resume and os.path.exists(transcript):
        fail(f"Error: Session ID {sid} is already in use.")

    size = int(os.environ.get("FAKE_CLAUDE_BYTES", "2000"))
    if os.environ.get("FAKE_CLAUDE_RANDOM") == "1":
        import base64
        filler = lambda: base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]
    else:
        filler = lambda: "r" * size
    now = time.time()
    turn = 0
    if os.path.isfile(transcript):
        with open(transcript) as f:
            turn = sum(1 for line in f if '"type": "user"' in line or '"type":"user"' in line)
    turn += 1

    # The transcript.
    parent = None
    lines = []
    for kind, text in (("user", prompt or ""), ("assistant", f"answer {turn}")):
        u = str(uuid.uuid4())
        lines.append(json.dumps({"type": kind, "sessionId": sid, "uuid": u, "parentUuid": parent,
                                 "cwd": cwd, "timestamp": now, "message": {"role": kind, "content": text}}))
        parent = u
    write(transcript, "\n".join(lines) + "\n", "a")
    # Subagents and tool results beside it.
    own = os.path.join(project, sid)
    write(os.path.join(own, "subagents", f"agent-{turn}.jsonl"), json.dumps({"turn": turn}) + "\n")
    write(os.path.join(own, "subagents", f"agent-{turn}.meta.json"), json.dumps({"agentType": "general"}))
    write(os.path.join(own, "tool-results", f"toolu_{turn}.txt"), filler())

    # Auto-memory.
    local = read_json(os.path.join(cwd, ".claude", "settings.local.json"), {})
    user = read_json(os.path.join(home, "settings.json"), {})
    memory = local.get("autoMemoryDirectory") or user.get("autoMemoryDirectory") or os.path.join(project, "memory")
    if os.environ.get("CLAUDE_CODE_DISABLE_AUTO_MEMORY") != "1":
        fact = os.environ.get("FAKE_CLAUDE_REMEMBER")
        if fact:
            write(os.path.join(memory, "MEMORY.md"), f"- {fact}\n", "a")
            write(os.path.join(memory, "facts", f"{abs(hash(fact)) % 10**8}.md"), fact + "\n")
        if print_memory:
            try:
                with open(os.path.join(memory, "MEMORY.md")) as f:
                    sys.stdout.write(f.read())
            except OSError:
                pass

    # Per-session files outside projects/.
    write(os.path.join(home, "todos", f"{sid}-agent-{sid}.json"), json.dumps([{"content": "t", "status": "pending"}]))
    write(os.path.join(home, "file-history", sid, f"{turn:08x}@v1"), f"file version {turn}\n")
    debug = os.path.join(home, "debug", f"{sid}.txt")
    write(debug, filler() + "\n", "a")
    latest = os.path.join(home, "debug", "latest")
    if os.path.lexists(latest):
        os.remove(latest)
    os.symlink(debug, latest)
    write(os.path.join(home, "session-env", sid, "hook-0.sh"), "export X=1\n")

    # Shared files.
    path = os.path.join(home, ".claude.json")
    config = read_json(path, {})
    config["numStartups"] = config.get("numStartups", 0) + 1
    config.setdefault("oauthAccount", {"accountUuid": "acct-fake", "emailAddress": "fake@example.invalid"})
    config.setdefault("projects", {})[cwd] = {"lastSessionId": sid, "hasTrustDialogAccepted": True}
    write(path, json.dumps(config, indent=2))
    write(os.path.join(home, "history.jsonl"),
          json.dumps({"display": prompt or "", "timestamp": int(now * 1000), "project": cwd, "sessionId": sid}) + "\n", "a")
    write(os.path.join(home, "shell-snapshots", f"snapshot-bash-{int(now * 1e6)}.sh"), "# snapshot\n")
    write(os.path.join(home, "paste-cache", f"{uuid.uuid4().hex[:16]}.txt"), "pasted\n")

    print(json.dumps({"type": "result", "session_id": sid, "turn": turn}))


if __name__ == "__main__":
    main(sys.argv[1:])
