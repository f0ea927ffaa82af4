"""The official Python MCP SDK (PyPI `mcp`) as a client of Cairn.

    python test_mcp.py stdio    # spawns `$CAIRN_BIN --data-dir $CAIRN_DATA_DIR mcp ...`
    python test_mcp.py http     # talks to $CAIRN_URL/mcp with $CAIRN_API_KEY

Both run the same checks: initialize, the five tools listed with their
schemas, ingest (paths over stdio, {name, text} documents over HTTP),
list_collections, search, get_document by a hit's and by a citation's
fields, ask, a bad argument (a JSON-RPC error naming it), a failing call
(isError), and the documents as resources (listed, read).
"""

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError

BRIDGE = (
    "# Kestrel Bridge\n\n## History\n\nThe Kestrel Bridge over the Varne estuary opened to "
    "traffic in 1987. It is 412 metres long and carries the coastal railway between Harrow "
    "Point and Selby.\n\n## Maintenance\n\nThe bridge is repainted every nine years by the "
    "Varne Harbour Trust.\n"
)
LIGHTHOUSE = (
    "# Selby Lighthouse\n\nThe Selby lighthouse was built in 1862 from granite quarried at "
    "Harrow Point. Its lamp is visible for 19 nautical miles.\n"
)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def exercise(session: ClientSession, transport: str, collection: str, ingest_args: dict):
    init = await session.initialize()
    check(init.serverInfo.name == "cairn", init)
    check(init.protocolVersion in ("2025-06-18", "2025-03-26", "2024-11-05"), init.protocolVersion)
    check(init.capabilities.tools is not None and init.capabilities.resources is not None, init)

    tools = {t.name: t for t in (await session.list_tools()).tools}
    check(set(tools) == {"search", "ask", "ingest", "list_collections", "get_document"}, tools)
    for t in tools.values():
        check(t.inputSchema["type"] == "object" and t.outputSchema["type"] == "object", t)
    wanted = "paths" if transport == "stdio" else "documents"
    check(tools["ingest"].inputSchema["required"] == [wanted], tools["ingest"].inputSchema)

    r = await session.call_tool("ingest", {"collection": collection, **ingest_args})
    check(not r.isError, r)
    check(r.structuredContent["added"] + r.structuredContent["unchanged"] == 2, r.structuredContent)

    r = await session.call_tool("list_collections", {})
    check(not r.isError, r)
    names = [c["name"] for c in r.structuredContent["collections"]]
    check(collection in names, names)

    r = await session.call_tool(
        "search", {"query": "When did the Kestrel Bridge open?", "collection": collection, "k": 2}
    )
    check(not r.isError, r)
    hits = r.structuredContent["hits"]
    check(len(hits) == 2, hits)
    top = hits[0]
    check(top["doc"].endswith("bridge.md") and "1987" in top["text"], top)
    check("1987" in r.content[0].text, r.content)

    r = await session.call_tool(
        "get_document",
        {"collection": collection, "doc": top["doc"], "start": top["start"], "end": top["end"]},
    )
    check(not r.isError, r)
    check(r.structuredContent["text"] == top["text"], (r.structuredContent, top))
    check(r.structuredContent["heading"] == top["heading"], (r.structuredContent, top))
    r = await session.call_tool(
        "get_document", {"collection": collection, "doc": top["doc"], "chunk": top["chunk"]}
    )
    check(r.structuredContent["text"] == top["text"], r.structuredContent)

    r = await session.call_tool(
        "ask", {"question": "How long is the Kestrel Bridge?", "collection": collection, "k": 2}
    )
    check(not r.isError, r)
    a = r.structuredContent
    check(isinstance(a["answer"], str) and a["answer"].strip(), a)
    check(a["answered"] is True, a)
    check(len(a["citations"]) >= 1, a)
    for c in a["citations"]:
        p = await session.call_tool(
            "get_document",
            {"collection": collection, "doc": c["doc"], "start": c["start"], "end": c["end"]},
        )
        check(not p.isError and p.structuredContent["text"] == c["text"], (p, c))

    # A bad argument is a JSON-RPC error that names it.
    try:
        await session.call_tool("search", {"query": "bridge", "collection": collection, "k": 0})
        raise AssertionError("k = 0 was accepted")
    except McpError as e:
        check(e.error.code == -32602 and "arguments.k" in e.error.message, e.error)
    # A call that fails is a result with isError.
    r = await session.call_tool("get_document", {"collection": collection, "doc": "no-such.md"})
    check(r.isError and "no-such.md" in r.content[0].text, r)

    uris = []
    cursor = None
    while True:
        page = await session.list_resources(cursor)
        uris += [str(res.uri) for res in page.resources]
        cursor = page.nextCursor
        if not cursor:
            break
    mine = [u for u in uris if u.startswith(f"cairn://{collection}/")]
    check(len(mine) == 2, uris)
    bridge_uri = next(u for u in mine if u.endswith("bridge.md"))
    text = (await session.read_resource(bridge_uri)).contents[0].text
    check(text.startswith("# Kestrel Bridge") and "412 metres" in text, text)
    templates = await session.list_resource_templates()
    check(templates.resourceTemplates[0].uriTemplate == "cairn://{collection}/{doc}", templates)
    print(f"python mcp SDK over {transport}: ok ({len(uris)} resources)")


async def over_stdio():
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        (docs / "bridge.md").write_text(BRIDGE)
        (docs / "lighthouse.md").write_text(LIGHTHOUSE)
        params = StdioServerParameters(
            command=os.environ["CAIRN_BIN"],
            args=["--data-dir", os.environ["CAIRN_DATA_DIR"], "mcp"]
            + os.environ.get("CAIRN_MCP_ARGS", "").split(),
            env={**os.environ},
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session, "stdio", "py-stdio", {"paths": [str(docs)]})


async def over_http():
    url = os.environ["CAIRN_URL"].rstrip("/") + "/mcp"
    key = os.environ["CAIRN_API_KEY"]
    docs = {"documents": [{"name": "bridge.md", "text": BRIDGE}, {"name": "lighthouse.md", "text": LIGHTHOUSE}]}
    async with streamablehttp_client(url, headers={"Authorization": f"Bearer {key}"}) as (read, write, sid):
        async with ClientSession(read, write) as session:
            await exercise(session, "http", "py-http", docs)
            check(sid(), "no session id")
    # Without the key: refused.
    try:
        async with streamablehttp_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await asyncio.wait_for(session.initialize(), 30)
        raise AssertionError("initialized without an API key")
    except AssertionError:
        raise
    except BaseException as e:  # the SDK raises the 401 inside a task group
        check("401" in repr(e) or "Unauthorized" in repr(e), repr(e))
    print("python mcp SDK over http: a request without the key is refused")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    asyncio.run(over_stdio() if which == "stdio" else over_http())
