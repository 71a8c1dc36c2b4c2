"""`webhook_post`: POSTs a JSON event to a URL, signed with the account's secret.

Build (from this folder, with the componentize-py pinned in requirements.txt):

    componentize-py -d wit -w executor componentize app -o dist/webhook-post.wasm

(`scripts/build-other-plugins` does it with its own venv.) `wit` links to the
`actionhost:executor@0.1.2` contract; `-w executor` names its world.

The request::

    POST <url>
    content-type: application/json
    x-webhook-signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
    idempotency-key: <the action's idempotency key, the same on every attempt>
    user-agent: actionhost-webhook-post/1.0.0

    {"event": <event>, "payload": <payload>}        (compact; no "event" when absent)

The signature is the HMAC-SHA256, under the account's signing secret, of
``f"{t}.".encode() + body``: the exact bytes sent. The host computes it (the
`signing` import); this code never sees the secret. A receiver recomputes it
over the raw body it received, compares in constant time, and rejects stale
timestamps to stop replays.

The account is a `signing_secret` account (auth scheme `api-key`); no
credentials are injected into the request. The plugin lists no outbound host:
the operator grants the destinations.

componentize-py conventions: the world's exports are methods of a class named
`WitWorld` subclassing `wit_world.WitWorld`; records are dataclasses, enums are
`Enum`s, each variant case is its own dataclass (`ExecuteError_Transient(...)`),
`option<T>` is `Optional[T]`. A `result<T, E>` export returns `T` for `ok` and
raises `componentize_py_types.Err(e)` for `err`; an imported function returning
a result raises `Err` the same way. Any other exception escaping an export
traps the instance.
"""

import json
import time
from urllib.parse import urlsplit

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import log, outgoing_handler, signing, streams
from wit_world.imports import wasi_http_types as http
from wit_world.imports.actionhost_executor_types import (
    ActionType,
    AuthScheme,
    ExecuteError_InvalidInput,
    ExecuteError_Permanent,
    ExecuteError_RateLimited,
    ExecuteError_Transient,
    ExecuteError_Unauthorized,
    ExecuteRequest,
    FieldError,
    Manifest,
    RateLimit,
    ReusePolicy,
)

NAME = "webhook_post"
VERSION = "1.0.0"
USER_AGENT = f"actionhost-webhook-post/{VERSION}"
# Bytes per `blocking-write-and-flush`: the most wasi:io promises to accept.
CHUNK = 4096
# How much of an error response's body goes into the error message.
EXCERPT = 200

PARAMS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "WebhookPostParams",
    "type": "object",
    "properties": {
        "url": {
            "description": "Where to POST: an http:// or https:// URL the operator allows.",
            "type": "string",
            "pattern": "^https?://",
        },
        "payload": {
            "description": "The event's data, sent as the body's `payload`.",
            "type": "object",
        },
        "event": {
            "description": "The event's name, such as `invoice.paid`, sent as the body's `event`.",
            "type": "string",
        },
    },
    "required": ["url", "payload"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "WebhookPostOutput",
    "type": "object",
    "properties": {
        "status": {"description": "The receiver's HTTP status (2xx).", "type": "integer"},
        "timestamp": {"description": "The signed timestamp `t`, unix seconds.", "type": "integer"},
    },
    "required": ["status", "timestamp"],
}


def url_problem(url) -> str | None:
    """What is wrong with `url` as a destination, if anything."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    try:
        parts = urlsplit(url)
        parts.port  # Raises on a port that is not a number below 65536.
    except ValueError as err:
        return f"is not a valid URL: {err}"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    return None


def check(action_type: str, params) -> list[FieldError]:
    """Business rules beyond the schema: every problem found."""
    if action_type != NAME:
        return [FieldError("", f"unknown action type {action_type!r}")]
    if not isinstance(params, dict):
        return [FieldError("", "params must be a JSON object")]
    errors = []
    if problem := url_problem(params.get("url")):
        errors.append(FieldError("/url", problem))
    if not isinstance(params.get("payload"), dict):
        errors.append(FieldError("/payload", "must be a JSON object"))
    if "event" in params and not isinstance(params["event"], str):
        errors.append(FieldError("/event", "must be a string"))
    return errors


def check_json(action_type: str, params: str) -> list[FieldError]:
    """`check` on params still in JSON text."""
    try:
        return check(action_type, json.loads(params))
    except ValueError as err:
        return [FieldError("", f"params are not JSON: {err}")]


MAX_RETRY_AFTER_S = 86_400.0


def retry_after_ms(headers: http.Fields) -> int | None:
    """`Retry-After` in milliseconds, when it holds delay-seconds."""
    for value in headers.get("retry-after"):
        try:
            seconds = float(value.decode("ascii").strip())
        except ValueError:
            return None  # An HTTP date: let the host choose the delay.
        if seconds != seconds:  # NaN
            return None
        # At most a day: an absurd (or infinite) value must not trap.
        return round(min(max(seconds, 0.0), MAX_RETRY_AFTER_S) * 1000)
    return None


def read_body(response: http.IncomingResponse) -> bytes:
    """Reads the response body until the stream closes; returns its first bytes."""
    kept = b""
    # The stream is a child of the body, the body of the response: each is
    # dropped before its parent. Dropping the body unfinished discards trailers.
    with response.consume() as body, body.stream() as stream:
        while True:
            try:
                chunk = stream.blocking_read(65536)
            except Err as err:
                if isinstance(err.value, streams.StreamError_Closed):
                    return kept
                raise Err(ExecuteError_Transient("the response body broke off")) from None
            if len(kept) < EXCERPT:
                kept += chunk[: EXCERPT - len(kept)]


def send(url: str, headers: list[tuple[str, bytes]], body: bytes) -> tuple[int, int | None, bytes]:
    """POSTs `body` with raw wasi:http; returns the status, its Retry-After and the body's start.

    Raises `Err(execute-error)`: `permanent` for a request the host or wasi:http
    refuses to make, `transient` when no response came (refused connection,
    DNS, timeout, reset).
    """
    parts = urlsplit(url)
    try:
        fields = http.Fields.from_list(headers)
    except Err as err:
        raise Err(ExecuteError_Permanent(f"invalid header: {err.value}")) from None
    request = http.OutgoingRequest(fields)
    request.set_method(http.Method_Post())
    try:
        request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
        request.set_authority(parts.netloc)
        request.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    except Err:
        raise Err(ExecuteError_Permanent(f"cannot request {url}")) from None

    outgoing = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as err:
        raise no_response(err.value) from None
    # `handle` first, then the body: the host reads the stream while it sends.
    with outgoing.write() as stream:
        try:
            for start in range(0, len(body), CHUNK):
                stream.blocking_write_and_flush(body[start : start + CHUNK])
        except Err:
            pass  # The request failed; the future below says why.
    try:
        http.OutgoingBody.finish(outgoing, None)
    except Err:
        pass  # Likewise.

    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    match answer:
        case Ok(value=Ok(value=response)):
            pass
        case Ok(value=Err(value=code)):
            raise no_response(code)
        case _:
            raise Err(ExecuteError_Transient("no response"))
    with response:
        status = response.status()
        with response.headers() as response_headers:
            retry_after = retry_after_ms(response_headers)
        return status, retry_after, read_body(response)


# `error-code`s for a request that cannot be sent as it is: no retry helps.
REFUSED = (
    http.ErrorCode_HttpRequestDenied,  # Not a destination the operator allows.
    http.ErrorCode_DestinationIpProhibited,  # A private address, not allowed here.
    http.ErrorCode_HttpRequestBodySize,
    http.ErrorCode_HttpRequestHeaderSectionSize,
    http.ErrorCode_HttpRequestHeaderSize,
    http.ErrorCode_HttpRequestUriInvalid,
    http.ErrorCode_HttpRequestUriTooLong,
)


def no_response(code: http.ErrorCode) -> Err:
    """The `execute-error` for a wasi:http `error-code` that came instead of a response.

    `permanent` when the host refused the request itself, `transient` when the
    network failed (DNS, refused or dropped connection, timeout, TLS).
    """
    name = type(code).__name__.removeprefix("ErrorCode_")
    if isinstance(code, REFUSED):
        return Err(ExecuteError_Permanent(f"the host refused the request ({name}); see the execution log"))
    return Err(ExecuteError_Transient(f"no response: {name}"))


class WitWorld(wit_world.WitWorld):
    """The `actionhost:executor/executor` world's exports."""

    def describe(self) -> Manifest:
        return Manifest(
            name="webhook-post",
            version=VERSION,
            description="Posts signed JSON webhooks",
            action_types=[
                ActionType(
                    name=NAME,
                    title="Post a signed webhook",
                    description=(
                        "POSTs {event, payload} as JSON to a URL, signed with the connected account's "
                        "signing secret (header x-webhook-signature: t=<unix time>,v1=<hex HMAC-SHA256 "
                        "of '<t>.' + body>), with the action's idempotency key in idempotency-key."
                    ),
                    params_schema=json.dumps(PARAMS_SCHEMA),
                    output_schema=json.dumps(OUTPUT_SCHEMA),
                    auth_schemes=[AuthScheme.API_KEY],
                    # Receivers deduplicate on the idempotency key.
                    idempotent=True,
                    requires_approval=False,
                )
            ],
            outbound_hosts=[],
        )

    def reuse_policy(self) -> ReusePolicy | None:
        return ReusePolicy(max_calls=1000, max_idle=0)

    def validate(self, action_type: str, params: str) -> None:
        if errors := check_json(action_type, params):
            raise Err(errors)

    def execute(self, request: ExecuteRequest) -> str:
        if errors := check_json(request.action_type, request.params):
            raise Err(ExecuteError_InvalidInput(errors))
        params = json.loads(request.params)
        message = {"event": params["event"]} if "event" in params else {}
        message["payload"] = params["payload"]
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()

        timestamp = int(time.time())
        try:
            mac = signing.hmac_sha256(f"{timestamp}.".encode() + body)
        except Err as err:
            # Permanent, not unauthorized: the account is of the wrong kind,
            # not rejected by anyone; retrying cannot help.
            raise Err(
                ExecuteError_Permanent(
                    "cannot sign the webhook: connect the account with a `signing_secret` auth "
                    f"config (the host said: {err.value.value})"
                )
            ) from None
        headers = [
            ("content-type", b"application/json"),
            ("content-length", str(len(body)).encode()),
            ("x-webhook-signature", f"t={timestamp},v1={mac.hex()}".encode()),
            ("idempotency-key", request.idempotency_key.encode()),
            ("user-agent", USER_AGENT.encode()),
        ]

        url = params["url"]
        log.write(log.Level.INFO, f"POST {urlsplit(url)._replace(query='', fragment='').geturl()}: {len(body)} bytes")
        status, retry_after, excerpt = send(url, headers, body)

        if 200 <= status < 300:
            return json.dumps({"status": status, "timestamp": timestamp}, separators=(",", ":"))
        said = f"the receiver answered HTTP {status}"
        if excerpt:
            said += f": {excerpt.decode('utf-8', 'replace')}"
        if status in (401, 403):
            # Permanent, not unauthorized: the URL is a per-action param, so
            # one receiver's refusal must not mark the account expired for
            # every other destination.
            raise Err(ExecuteError_Permanent(f"{said} (does the receiver have this account's signing secret?)"))
        if status == 429:
            raise Err(ExecuteError_RateLimited(RateLimit(message=said, retry_after_ms=retry_after)))
        if status == 408 or status >= 500:
            raise Err(ExecuteError_Transient(said))
        raise Err(ExecuteError_Permanent(said))
