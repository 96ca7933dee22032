#!/usr/bin/env python3
"""The Go seed's per-turn Setup / Teardown, redone with boto3 + tarfile.

This is the baseline `ccws-bench turn` compares `ccws setup` / `ccws teardown`
against. It does what the seed's `workspace` package does, no more:

  setup:    create <base>/cc-broker/sess_<session>/{claude-config,project},
            stream-download and untar workspaces/<ws>/claude-home.tar.gz into
            claude-config (missing = empty), download the session transcript
            workspaces/<ws>/sessions/<session>.jsonl (missing = new session),
            create the memory dir.
  teardown: upload the transcript, tar.gz claude-config minus this session's
            subtree (projects/<project hash>) into memory (gzip level 6, modes
            normalised, symlinks skipped), PUT it, remove the session dir.

Each command prints one JSON line with the paths and the time spent inside the
command: `import_secs` (import boto3), `client_secs` (boto3.client) and
`work_secs` (the setup or teardown itself: what a long-running server like the
seed pays per turn).

Usage:
  turn_boto3.py {setup|teardown} --endpoint URL --bucket B --workspace W
                --session S --temp-dir DIR [--prefix P] [--region R]
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import argparse
import io
import json
import os
import re
import shutil
import sys
import tarfile
import time

T_START = time.perf_counter()

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

T_IMPORTED = time.perf_counter()


def layout(base, workspace, session):
    temp_dir = os.path.join(base, "cc-broker", f"sess_{session}")
    claude_dir = os.path.join(temp_dir, "claude-config")
    project_dir = os.path.join(temp_dir, "project")
    project_hash = re.sub(r"[^A-Za-z0-9]", "-", project_dir)
    subtree = f"projects/{project_hash}"
    return {
        "temp_dir": temp_dir,
        "claude_dir": claude_dir,
        "project_dir": project_dir,
        "memory_dir": os.path.join(claude_dir, "projects", f"ws_{workspace}", "memory"),
        "transcript": os.path.join(claude_dir, subtree, f"{session}.jsonl"),
        "session_subtree": subtree,
    }


def keys(prefix, workspace, session):
    return (
        f"{prefix}workspaces/{workspace}/claude-home.tar.gz",
        f"{prefix}workspaces/{workspace}/sessions/{session}.jsonl",
    )


def client(args):
    return boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        config=Config(s3={"addressing_style": "path"}),
    )


def is_missing(err):
    return err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def setup(s3, args, paths):
    home_key, transcript_key = keys(args.prefix, args.workspace, args.session)
    for d in (paths["claude_dir"], paths["project_dir"]):
        os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        # DownloadTarGz: stream, gunzip, untar; entries escaping the dir are skipped.
        body = s3.get_object(Bucket=args.bucket, Key=home_key)["Body"]
        with tarfile.open(fileobj=body, mode="r|gz") as tar:
            tar.extractall(paths["claude_dir"], filter="data")
    except ClientError as e:
        if not is_missing(e):
            raise
    try:
        os.makedirs(os.path.dirname(paths["transcript"]), exist_ok=True)
        s3.download_file(args.bucket, transcript_key, paths["transcript"])
    except ClientError as e:
        if not is_missing(e):
            raise
    os.makedirs(paths["memory_dir"], exist_ok=True)


def normalise(info):
    """The seed's modes: 0644 files, 0755 dirs, owners zeroed; symlinks skipped."""
    if info.issym() or info.islnk():
        return None
    info.mode = 0o755 if info.isdir() else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(claude_dir, exclude_rel):
    """UploadTarGz: walk in sorted order, buffer the tar.gz in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for root, dirs, files in os.walk(claude_dir):
            rel_root = os.path.relpath(root, claude_dir)
            rel = lambda name: name if rel_root == "." else f"{rel_root}/{name}"  # noqa: E731
            dirs[:] = sorted(d for d in dirs if rel(d) != exclude_rel)
            for d in dirs:
                tar.add(os.path.join(root, d), arcname=rel(d), recursive=False, filter=normalise)
            for f in sorted(files):
                tar.add(os.path.join(root, f), arcname=rel(f), recursive=False, filter=normalise)
    return buf.getvalue()


def teardown(s3, args, paths):
    home_key, transcript_key = keys(args.prefix, args.workspace, args.session)
    try:
        if os.path.isfile(paths["transcript"]):
            with open(paths["transcript"], "rb") as f:
                s3.put_object(Bucket=args.bucket, Key=transcript_key, Body=f.read())
        data = pack(paths["claude_dir"], paths["session_subtree"])
        s3.put_object(Bucket=args.bucket, Key=home_key, Body=data)
    finally:
        shutil.rmtree(paths["temp_dir"], ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["setup", "teardown"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--workspace", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--temp-dir", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--region", default="us-east-1")
    args = p.parse_args()

    paths = layout(os.path.abspath(args.temp_dir), args.workspace, args.session)
    t0 = time.perf_counter()
    s3 = client(args)
    t1 = time.perf_counter()
    (setup if args.command == "setup" else teardown)(s3, args, paths)
    t2 = time.perf_counter()
    json.dump(
        {
            **paths,
            "import_secs": T_IMPORTED - T_START,
            "client_secs": t1 - t0,
            "work_secs": t2 - t1,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
