// The official TypeScript MCP SDK (npm @modelcontextprotocol/sdk) as a
// client of Cairn:
//
//   node client.mjs stdio   # spawns `$CAIRN_BIN --data-dir $CAIRN_DATA_DIR mcp ...`
//   node client.mjs http    # talks to $CAIRN_URL/mcp with $CAIRN_API_KEY
//
// The same checks as test_mcp.py: initialize, the tools and their schemas,
// ingest, list_collections, search, get_document by a hit and by a
// citation, ask, a bad argument, a failing call, resources.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BRIDGE =
  "# Kestrel Bridge\n\n## History\n\nThe Kestrel Bridge over the Varne estuary opened to " +
  "traffic in 1987. It is 412 metres long and carries the coastal railway between Harrow " +
  "Point and Selby.\n\n## Maintenance\n\nThe bridge is repainted every nine years by the " +
  "Varne Harbour Trust.\n";
const LIGHTHOUSE =
  "# Selby Lighthouse\n\nThe Selby lighthouse was built in 1862 from granite quarried at " +
  "Harrow Point. Its lamp is visible for 19 nautical miles.\n";

async function exercise(client, transport, collection, ingestArgs) {
  const info = client.getServerVersion();
  assert.equal(info.name, "cairn");
  const caps = client.getServerCapabilities();
  assert.ok(caps.tools && caps.resources, JSON.stringify(caps));

  const { tools } = await client.listTools();
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
  assert.deepEqual(Object.keys(byName).sort(), ["ask", "get_document", "ingest", "list_collections", "search"]);
  for (const t of tools) {
    assert.equal(t.inputSchema.type, "object");
    assert.equal(t.outputSchema.type, "object");
  }
  assert.deepEqual(byName.ingest.inputSchema.required, [transport === "stdio" ? "paths" : "documents"]);

  let r = await client.callTool({ name: "ingest", arguments: { collection, ...ingestArgs } });
  assert.ok(!r.isError, JSON.stringify(r));
  assert.equal(r.structuredContent.added + r.structuredContent.unchanged, 2);

  r = await client.callTool({ name: "list_collections", arguments: {} });
  assert.ok(r.structuredContent.collections.some((c) => c.name === collection), JSON.stringify(r));

  r = await client.callTool({
    name: "search",
    arguments: { query: "When did the Kestrel Bridge open?", collection, k: 2 },
  });
  assert.ok(!r.isError, JSON.stringify(r));
  const hits = r.structuredContent.hits;
  assert.equal(hits.length, 2);
  const top = hits[0];
  assert.ok(top.doc.endsWith("bridge.md") && top.text.includes("1987"), JSON.stringify(top));

  r = await client.callTool({
    name: "get_document",
    arguments: { collection, doc: top.doc, start: top.start, end: top.end },
  });
  assert.equal(r.structuredContent.text, top.text);
  assert.equal(r.structuredContent.heading, top.heading);
  r = await client.callTool({ name: "get_document", arguments: { collection, doc: top.doc, chunk: top.chunk } });
  assert.equal(r.structuredContent.text, top.text);

  r = await client.callTool({
    name: "ask",
    arguments: { question: "How long is the Kestrel Bridge?", collection, k: 2 },
  });
  assert.ok(!r.isError, JSON.stringify(r));
  const a = r.structuredContent;
  assert.ok(a.answer.trim().length > 0 && a.answered === true, JSON.stringify(a));
  assert.ok(a.citations.length >= 1, JSON.stringify(a));
  for (const c of a.citations) {
    const p = await client.callTool({
      name: "get_document",
      arguments: { collection, doc: c.doc, start: c.start, end: c.end },
    });
    assert.equal(p.structuredContent.text, c.text);
  }

  await assert.rejects(
    client.callTool({ name: "search", arguments: { query: "bridge", collection, mode: "fuzzy" } }),
    (e) => e instanceof McpError && e.code === -32602 && e.message.includes("arguments.mode"),
  );
  r = await client.callTool({ name: "get_document", arguments: { collection, doc: "no-such.md" } });
  assert.ok(r.isError && r.content[0].text.includes("no-such.md"), JSON.stringify(r));

  const uris = [];
  let cursor;
  do {
    const page = await client.listResources(cursor ? { cursor } : {});
    uris.push(...page.resources.map((x) => x.uri));
    cursor = page.nextCursor;
  } while (cursor);
  const mine = uris.filter((u) => u.startsWith(`cairn://${collection}/`));
  assert.equal(mine.length, 2, JSON.stringify(uris));
  const bridgeUri = mine.find((u) => u.endsWith("bridge.md"));
  const read = await client.readResource({ uri: bridgeUri });
  assert.ok(read.contents[0].text.startsWith("# Kestrel Bridge") && read.contents[0].text.includes("412 metres"));
  const t = await client.listResourceTemplates();
  assert.equal(t.resourceTemplates[0].uriTemplate, "cairn://{collection}/{doc}");
  console.log(`node MCP SDK over ${transport}: ok (${uris.length} resources)`);
}

async function overStdio() {
  const tmp = mkdtempSync(join(tmpdir(), "cairn-mcp-node-"));
  try {
    const docs = join(tmp, "docs");
    mkdirSync(docs);
    writeFileSync(join(docs, "bridge.md"), BRIDGE);
    writeFileSync(join(docs, "lighthouse.md"), LIGHTHOUSE);
    const extra = (process.env.CAIRN_MCP_ARGS || "").split(" ").filter(Boolean);
    const transport = new StdioClientTransport({
      command: process.env.CAIRN_BIN,
      args: ["--data-dir", process.env.CAIRN_DATA_DIR, "mcp", ...extra],
      env: { ...process.env },
      stderr: "inherit",
    });
    const client = new Client({ name: "cairn-node-test", version: "0.0.0" });
    await client.connect(transport);
    await exercise(client, "stdio", "node-stdio", { paths: [docs] });
    await client.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function overHttp() {
  const url = new URL(process.env.CAIRN_URL.replace(/\/$/, "") + "/mcp");
  const headers = { Authorization: `Bearer ${process.env.CAIRN_API_KEY}` };
  const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
  const client = new Client({ name: "cairn-node-test", version: "0.0.0" });
  await client.connect(transport);
  assert.ok(transport.sessionId, "no session id");
  await exercise(client, "http", "node-http", {
    documents: [
      { name: "bridge.md", text: BRIDGE },
      { name: "lighthouse.md", text: LIGHTHOUSE },
    ],
  });
  await transport.terminateSession();
  await client.close();

  // Without the key: refused.
  const bare = new Client({ name: "cairn-node-test", version: "0.0.0" });
  await assert.rejects(bare.connect(new StreamableHTTPClientTransport(url)), (e) => /401|nauthorized/.test(String(e)));
  console.log("node MCP SDK over http: a request without the key is refused");
}

const which = process.argv[2] || "stdio";
await (which === "stdio" ? overStdio() : overHttp());
