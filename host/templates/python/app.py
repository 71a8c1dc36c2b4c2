"""{{name}}: an actionhost executor plugin, in Python (componentize-py).

Build:  actionhost plugin build        (writes dist/{{name}}.wasm; installs the
                                        componentize-py of requirements.txt in .venv)
Test:   actionhost plugin test dist/{{name}}.wasm --case tests/basic.case.json

The contract is the WIT world in `wit/executor.wit`; actionhost's
docs/plugins.md explains every function, error variant and limit.

componentize-py conventions: the world's exports are methods of a class named
`WitWorld`; records are dataclasses, enums are `Enum`s, each variant case is a
dataclass of its own (`ExecuteError_Permanent("...")`), `option<T>` is
`Optional[T]`. A `result<T, E>` export returns `T` for `ok` and raises
`Err(e)` for `err`; any other exception escaping an export traps the
instance (the host reports it with the plugin's log).

For outbound HTTP, see plugins/webhook-post/app.py in the actionhost
repository (wasi:http from Python); the host injects the account's
credentials into each request, so the plugin never sees them.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.actionhost_executor_types import (
    ActionType,
    AuthScheme,
    ExecuteError,
    ExecuteError_Permanent,
    ExecuteRequest,
    FieldError,
    Manifest,
    ReusePolicy,
)

ACTION = "{{action}}"

# JSON Schema (2020-12) of the params; the host checks params against it
# before `validate` and `execute` see them.
PARAMS_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "Who to greet."},
            "shout": {"type": "boolean", "description": "Greet in capitals."},
        },
        "required": ["name"],
        "additionalProperties": False,
    }
)


class WitWorld(wit_world.WitWorld):
    """The exports of the `actionhost:executor/executor` world."""

    def describe(self) -> Manifest:
        """Called once at load; must be deterministic and must not call out."""
        return Manifest(
            name="{{name}}",
            version="0.1.0",
            description="Greets someone (a skeleton to start from).",
            action_types=[
                ActionType(
                    name=ACTION,
                    title="Greet someone",
                    description="Returns a greeting for `name`.",
                    params_schema=PARAMS_SCHEMA,
                    output_schema=None,
                    # `NONE`: no connected account needed. A plugin calling an
                    # API lists the schemes it accepts (BEARER, OAUTH2, ...).
                    auth_schemes=[AuthScheme.NONE],
                    idempotent=True,
                    requires_approval=False,
                )
            ],
            # Every host the plugin calls, e.g. OutboundHost("https", "api.example.com", None).
            outbound_hosts=[],
        )

    def reuse_policy(self) -> ReusePolicy | None:
        """Let the host keep an instance between executions of one account:
        a Python instance costs about 2 ms to create. Globals then survive
        from one execution to the next (of the same account only)."""
        return ReusePolicy(max_calls=1000, max_idle=0)

    def validate(self, action_type: str, params: str) -> None:
        """Business rules the schema cannot express; report every problem."""
        errors = []
        if action_type != ACTION:
            errors.append(FieldError(path="", message=f"unknown action type {action_type}"))
        if not json.loads(params)["name"].strip():
            errors.append(FieldError(path="/name", message="must not be blank"))
        if errors:
            raise Err(errors)

    def execute(self, request: ExecuteRequest) -> str:
        """One attempt of an action: the output as JSON text, or raise
        `Err(ExecuteError_...)` to tell the host whether to retry."""
        params = json.loads(request.params)
        name = params.get("name")
        if not isinstance(name, str):
            error: ExecuteError = ExecuteError_Permanent("name is missing")
            raise Err(error)
        greeting = f"Hello, {name}!"
        if params.get("shout"):
            greeting = greeting.upper()
        log.write(log.Level.INFO, f"greeting {name} (attempt {request.attempt})")
        return json.dumps({"greeting": greeting})
