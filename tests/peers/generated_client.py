"""Calls every endpoint of a client generated from /openapi.json by
openapi-python-client, for tests/tests/openapi_client.rs.

Usage: generated_client.py PACKAGE BASE_URL API_KEY

Each module under PACKAGE.api is one operation. Its `sync_detailed` is
called with the required arguments (and the body, always) built from its
type hints (strings for
path parameters, a model for a body, with its required fields filled the
same way). What matters is that the generated code can build each request
and parse each answer: a status the server answers with that the document
does not list, or a body that does not fit it, raises here. Prints one JSON
line: every operation called, with the status it got.
"""

import enum
import importlib
import inspect
import io
import json
import pkgutil
import sys
import types
import typing

import attrs

PACKAGE, BASE_URL, API_KEY = sys.argv[1:4]

client_module = importlib.import_module(f"{PACKAGE}.client")
# Models refer to each other by name (their imports are for type checkers
# only): resolve hints against the package's models.
MODELS = vars(importlib.import_module(f"{PACKAGE}.models"))
package_types = importlib.import_module(f"{PACKAGE}.types")
client = client_module.AuthenticatedClient(
    base_url=BASE_URL, token=API_KEY, raise_on_unexpected_status=True, timeout=30.0
)


def value_for(hint, depth=0):
    """A value of the type `hint` names, as small as the type allows."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None) and a is not package_types.Unset]
        return value_for(options[0], depth) if options else None
    if origin in (list, typing.List):
        return []
    if origin in (dict, typing.Dict):
        return {}
    if hint is str:
        return "x"
    if hint is int:
        return 1
    if hint is float:
        return 1.0
    if hint is bool:
        return False
    if hint is package_types.File:
        return package_types.File(payload=io.BytesIO(b"not a component"), file_name="x.wasm")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return list(hint)[0]
    if isinstance(hint, type) and hasattr(hint, "from_dict") and depth < 5:
        return build(hint, depth + 1)
    return {}


def build(model, depth):
    """An instance of a generated model with its required fields set."""
    hints = typing.get_type_hints(model, localns=MODELS)
    fields = {}
    for field in model.__attrs_attrs__:
        if field.default is not attrs.NOTHING or field.name == "additional_properties":
            continue
        fields[field.name] = value_for(hints[field.name], depth)
    return model(**fields)


api = importlib.import_module(f"{PACKAGE}.api")
called = []
for group in pkgutil.iter_modules(api.__path__):
    package = importlib.import_module(f"{PACKAGE}.api.{group.name}")
    for endpoint in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{PACKAGE}.api.{group.name}.{endpoint.name}")
        function = module.sync_detailed
        hints = typing.get_type_hints(function, localns=MODELS)
        arguments = {}
        for name, parameter in inspect.signature(function).parameters.items():
            if name == "client":
                arguments[name] = client
            elif parameter.default is inspect.Parameter.empty or name == "body":
                # An optional body is sent too: the generated code cannot
                # leave one out (it would send its UNSET marker as JSON).
                arguments[name] = value_for(hints[name])
        try:
            response = function(**arguments)
        except Exception as error:  # the operation's name, then the failure
            raise SystemExit(f"{group.name}.{endpoint.name}: {type(error).__name__}: {error}")
        called.append({"operation": f"{group.name}.{endpoint.name}", "status": int(response.status_code)})

print(json.dumps({"calls": called}))
