"""POST a JSON body to a user's endpoint, retrying what may pass: the endpoint grader's and the training worker's
HTTP tools' one call loop (daemon.worker.tool_runtime imports it; graders import nothing of ours).

5xx answers, timeouts and connection errors are retried with exponential backoff (BACKOFF_S, doubling, at most
MAX_BACKOFF_S); any other answer -- 2xx, or a 4xx, which retrying will not change -- is returned for the caller
to read. Clients made here take no proxy from the environment and follow no redirects: a call goes to exactly
the URL the job names.
"""

from __future__ import annotations

import time
from typing import Any

#: The first retry waits this long, doubling after each failure up to MAX_BACKOFF_S.
BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


def endpoint_client(max_connections: int | None = None) -> Any:
    """An httpx.Client for user endpoints: no proxy from the environment (trust_env=False), no redirects."""
    import httpx

    if max_connections:
        return httpx.Client(trust_env=False, follow_redirects=False,
                            limits=httpx.Limits(max_connections=max_connections))
    return httpx.Client(trust_env=False, follow_redirects=False)


def post_with_retries(client: Any, url: str, body: Any, *, headers: dict[str, str], timeout_s: float,
                      max_retries: int, endpoint: str, timeout_prefix: str = "") -> tuple[Any, str | None]:
    """(the answer, None) for the first answer that is not a 5xx, or (None, why) once `1 + max_retries`
    attempts all failed: `why` is the last failure -- `{timeout_prefix}timed out after T s`, `could not reach
    {endpoint} (...)` or `{endpoint} answered HTTP 5xx: ...` -- with the attempt count, e.g. `(3 attempts)`."""
    import httpx

    attempts = 1 + max_retries
    last = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S))  # back off before a retry
        try:
            response = client.post(url, json=body, headers=headers, timeout=timeout_s)
        except httpx.TimeoutException:
            last = f"{timeout_prefix}timed out after {timeout_s:g} s"
            continue
        except httpx.TransportError as exc:
            last = f"could not reach {endpoint} ({type(exc).__name__}: {exc})"
            continue
        if response.status_code >= 500:
            last = f"{endpoint} answered HTTP {response.status_code}: {response.text[:200]}"
            continue
        return response, None
    return None, f"{last} ({attempts} attempt{'s' if attempts > 1 else ''})"
