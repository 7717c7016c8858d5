"""Helpers for tests that start a real ``fervid serve`` process."""

from __future__ import annotations

import subprocess
import time


def wait_until_serving(base: str, proc: subprocess.Popen[str], timeout: float) -> None:
    """Poll ``base``/healthz until a started ``fervid serve`` has loaded its model; fail with the
    server's own output if it exits first, or after ``timeout`` seconds."""
    import httpx  # the serve extra's client, as the tests that call this

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).json()["model_loaded"]:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.time() < deadline, "fervid serve did not come up"
        time.sleep(0.2)
