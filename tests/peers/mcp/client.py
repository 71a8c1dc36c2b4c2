"""A real MCP client (PyPI `mcp` 2.x) driving actionhost's /mcp: the test
runs it as `client.py URL KEY MODE` and checks what it prints, one JSON
object, and what reached the stand-ins.

It connects with the API key in the Authorization header, lists the tools,
calls crm_sync, calls linkedin_message (which needs approval), calls
crm_sync with arguments that break its schema, calls a tool that does not
exist, and follows up with get_action and list_pending_actions.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def result(answer):
    return {
        "isError": bool(answer.is_error),
        "structured": answer.structured_content,
        "text": [c.text for c in answer.content if getattr(c, "type", "") == "text"],
    }


async def main(url, key, mode):
    headers = {"Authorization": f"Bearer {key}"}
    out = {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
            out["protocol"] = client.protocol_version
            listed = await client.list_tools()
            out["tools"] = [
                {
                    "name": t.name,
                    "inputSchema": t.input_schema,
                    "annotations": t.annotations.model_dump(by_alias=True, exclude_none=True) if t.annotations else None,
                }
                for t in listed.tools
            ]
            out["crm"] = result(
                await client.call_tool("crm_sync", {"contacts": [{"email": "python@example.com", "properties": {"firstname": "Python"}}]})
            )
            out["linkedin"] = result(
                await client.call_tool(
                    "linkedin_message", {"recipients": ["urn:li:person:python"], "body": "Hello from python"}
                )
            )
            out["bad"] = result(await client.call_tool("crm_sync", {"contacts": [{"email": 7}], "extra": True}))
            try:
                await client.call_tool("no_such_tool", {})
                out["unknown"] = {"raised": False}
            except MCPError as err:
                out["unknown"] = {"raised": True, "code": err.error.code, "message": err.error.message}
            action_id = (out["linkedin"]["structured"] or {}).get("action_id")
            out["get_action"] = result(await client.call_tool("get_action", {"action_id": action_id}))
            out["pending"] = result(await client.call_tool("list_pending_actions", {}))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "auto"))
