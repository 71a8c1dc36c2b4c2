"""Composio's own Python client (composio-core 0.7.22), unmodified, against
actionhost: one flow per run, named by the first argument, with the client
configured only through its environment (COMPOSIO_BASE_URL,
COMPOSIO_API_KEY). Prints one JSON object: what the client returned, or
the exception it raised. The test (tests/tests/composio_client.rs) checks
it and what reached the provider stand-in.

Other inputs, from the environment: ENTITY (the end user), ACCOUNT (a
connected account id), TOKEN and PROVIDER_URL (for a custom authConfig).
"""

import json
import os
import sys

from composio import Action, Composio, ComposioToolSet

CONTACTS = {"contacts": [{"email": "ada@example.com", "properties": {"firstname": "Ada"}}]}


def apps():
    client = Composio()
    listed = client.apps.get()
    one = client.apps.get("CRM-SYNC")
    return {"keys": sorted(app.key for app in listed), "one": one.key, "no_auth": one.no_auth}


def schema():
    client = Composio()
    action = client.actions.get(Action("CRM_SYNC"))
    listed = client.actions.get(actions=[Action("CRM_SYNC")])
    return {
        "name": action.name,
        "app": action.appName,
        "versions": action.available_versions,
        "parameters": action.parameters.model_dump(),
        "listed": [a.name for a in listed],
    }


def execute_by_entity():
    entity = Composio().get_entity(os.environ["ENTITY"])
    return entity.execute(action=Action("CRM_SYNC"), params=CONTACTS)


def execute_by_account():
    return Composio().actions.execute(
        action=Action("CRM_SYNC"),
        params=CONTACTS,
        entity_id=os.environ["ENTITY"],
        connected_account=os.environ["ACCOUNT"],
    )


def toolset():
    tools = ComposioToolSet(entity_id=os.environ["ENTITY"], lock=False)
    schemas = tools.get_action_schemas(actions=["CRM_SYNC"])
    result = tools.execute_action(action="CRM_SYNC", params=CONTACTS)
    return {
        "schemas": [
            {"name": s.name, "properties": sorted(s.parameters.properties)} for s in schemas
        ],
        "result": result,
    }


def custom_auth():
    tools = ComposioToolSet(entity_id=os.environ["ENTITY"], lock=False)
    tools.add_auth(
        app="crm-sync",
        parameters=[
            {"in_": "header", "name": "Authorization", "value": "Bearer " + os.environ["TOKEN"]}
        ],
        base_url=os.environ["PROVIDER_URL"],
    )
    return tools.execute_action(action="CRM_SYNC", params=CONTACTS)


def bad_key():
    return {"apps": len(Composio().apps.get())}


FLOWS = {
    "apps": apps,
    "schema": schema,
    "execute_by_entity": execute_by_entity,
    "execute_by_account": execute_by_account,
    "toolset": toolset,
    "custom_auth": custom_auth,
    "bad_key": bad_key,
}

if __name__ == "__main__":
    try:
        out = {"ok": FLOWS[sys.argv[1]]()}
    except Exception as err:  # reported to the test, which names what failed
        out = {"error": type(err).__name__, "message": str(err)[:2000]}
    print(json.dumps(out, default=str))
