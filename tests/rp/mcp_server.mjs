// The upstream MCP server of tests/mcp_agents.rs: the MCP TypeScript SDK's own server
// (Streamable HTTP, stateless), knowing nothing of OAuth. Tollgate in front of it makes it
// an OAuth 2.1 protected resource. Its one tool answers who Tollgate said is calling
// (the X-User-Id header it injected).
//
// node mcp_server.mjs --port PORT      prints "listening PORT" once it accepts requests.

import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const i = process.argv.indexOf('--port');
const port = i > 0 ? Number(process.argv[i + 1]) : 0;

function server() {
  const s = new McpServer({ name: 'tollgate-test-upstream', version: '1.0.0' });
  s.registerTool('whoami', { description: 'Who Tollgate says is calling' }, async (extra) => {
    const headers = extra?.requestInfo?.headers ?? {};
    return { content: [{ type: 'text', text: JSON.stringify({ user_id: headers['x-user-id'] ?? null }) }] };
  });
  return s;
}

const httpServer = http.createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  const parsed = body ? JSON.parse(body) : undefined;
  // Stateless: one server and transport per request, as the SDK's stateless example.
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  const s = server();
  res.on('close', () => {
    transport.close();
    s.close();
  });
  await s.connect(transport);
  await transport.handleRequest(req, res, parsed);
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`listening ${httpServer.address().port}`);
});
