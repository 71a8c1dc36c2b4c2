"""The cost of Composio's client over raw HTTP, against one actionhost:
N executions of the no-op action through Composio's own client
(`Composio().actions.execute`), and N raw POSTs of the body that client
sends to the same endpoint, one at a time from this one process.

Usage: composio_calls.py BASE_URL KEY N. Prints one JSON object with the
per-call latencies (milliseconds) of each.
"""

import json
import os
import sys
import tempfile
import time

base_url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cache = tempfile.mkdtemp(prefix="composio-bench-")
with open(os.path.join(cache, "user_data.json"), "w") as f:
    json.dump({"sentry": {"dsn": ""}}, f)
os.environ.update(
    COMPOSIO_BASE_URL=base_url + "/api",
    COMPOSIO_API_KEY=key,
    COMPOSIO_CACHE_DIR=cache,
    COMPOSIO_DISABLE_VERSION_CHECK="true",
    COMPOSIO_DISABLE_SENTRY="true",
)

import requests  # noqa: E402  (after the environment is set)
from composio import Action, Composio  # noqa: E402

client = Composio()
action = Action("NOOP")
session = requests.Session()
url = base_url + "/api/v2/actions/NOOP/execute"
headers = {"x-api-key": key, "content-type": "application/json"}
body = json.dumps(
    {"appName": "FIXTURE-NOOP", "input": {}, "text": None, "version": "latest:base",
     "sessionInfo": {"sessionId": None}, "allowTracing": False}
)


def through_client():
    answer = client.actions.execute(action=action, params={})
    assert answer.get("successful") is True, answer


def raw():
    answer = session.post(url, data=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["successful"] is True, answer.text


def timed(call):
    for _ in range(min(20, n)):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


print(json.dumps({"client_ms": timed(through_client), "raw_ms": timed(raw)}))
