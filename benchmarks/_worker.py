"""Run one benchmark measurement in a fresh process (clean peak-memory figures)."""

from __future__ import annotations

import json
import subprocess
import sys


def run_measurement(cmd: list[str], what: str) -> dict:
    """Run ``cmd``; return the JSON of its ``RESULT {...}`` line, or exit showing its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{what} failed (exit {proc.returncode})")
    return json.loads(line[0][7:])
