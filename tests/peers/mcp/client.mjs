// Real MCP clients (the TypeScript SDK) driving actionhost's /mcp: the test
// runs `node client.mjs sdk1|sdk2 URL KEY` and checks the one JSON object
// it prints, and what reached the stand-ins.
//
// sdk1 is @modelcontextprotocol/sdk 1.x, which speaks the session-based
// protocol (2025-11-25); sdk2 is @modelcontextprotocol/client 2.x pinned to
// the stateless revision 2026-07-28. Both send the API key in the
// Authorization header, list the tools, call crm_sync, call
// linkedin_message (which needs approval), call crm_sync with arguments
// that break its schema and a tool that does not exist, and follow up with
// get_action and list_pending_actions.

const [flavour, url, key] = process.argv.slice(2);
const requestInit = { headers: { Authorization: `Bearer ${key}` } };

let client;
let protocol;
if (flavour === "sdk1") {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
  const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
  client = new Client({ name: "actionhost-test-sdk1", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit });
  await client.connect(transport);
  protocol = transport.protocolVersion;
  if (!transport.sessionId) throw new Error("the 2025-11-25 connection has no session id");
} else {
  const { Client, StreamableHTTPClientTransport } = await import("@modelcontextprotocol/client");
  client = new Client(
    { name: "actionhost-test-sdk2", version: "2.0.0" },
    { versionNegotiation: { mode: { pin: "2026-07-28" } } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit }));
  protocol = client.getNegotiatedProtocolVersion();
}

const result = (answer) => ({
  isError: Boolean(answer.isError),
  structured: answer.structuredContent ?? null,
  text: (answer.content ?? []).filter((c) => c.type === "text").map((c) => c.text),
});

const out = { protocol };
const listed = await client.listTools();
out.tools = listed.tools.map((t) => ({ name: t.name, inputSchema: t.inputSchema, annotations: t.annotations ?? null }));
out.crm = result(
  await client.callTool({
    name: "crm_sync",
    arguments: { contacts: [{ email: `${flavour}@example.com`, properties: { firstname: flavour } }] },
  }),
);
out.linkedin = result(
  await client.callTool({
    name: "linkedin_message",
    arguments: { recipients: [`urn:li:person:${flavour}`], body: `Hello from ${flavour}` },
  }),
);
out.bad = result(await client.callTool({ name: "crm_sync", arguments: { contacts: [{ email: 7 }], extra: true } }));
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  out.unknown = { raised: false };
} catch (err) {
  out.unknown = { raised: true, code: err.code, message: err.message };
}
const actionId = out.linkedin.structured?.action_id;
out.get_action = result(await client.callTool({ name: "get_action", arguments: { action_id: actionId } }));
out.pending = result(await client.callTool({ name: "list_pending_actions", arguments: {} }));
await client.close();
console.log(JSON.stringify(out));
