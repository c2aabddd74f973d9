"""Alarm notifications: a small JSON document POSTed to a webhook, retried, each try bounded.

Any HTTP endpoint that accepts JSON works (a chat incoming-webhook, an alert manager's generic
receiver). A notification that cannot be delivered is logged and reported to the caller; it
never hides the alarm itself (the job's exit status and the run's tags carry it regardless).
"""
from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("tsi.ops")


def post_json(url: str, payload: dict[str, Any], *, timeout_s: float = 5.0, retries: int = 2,
              backoff_s: float = 0.5) -> tuple[bool, str]:
    """POST ``payload``; (delivered, what happened) after at most ``retries`` + 1 tries."""
    body = json.dumps(payload, sort_keys=True).encode("utf-8")
    last = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                if 200 <= answer.status < 300:
                    return True, f"HTTP {answer.status} after {attempt + 1} tries"
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retries:
            time.sleep(backoff_s * 2 ** attempt)
    log.warning("alarm notification to %s failed after %d tries: %s", url, retries + 1, last)
    return False, f"failed after {retries + 1} tries: {last}"
