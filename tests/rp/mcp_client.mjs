// The MCP TypeScript SDK's client against an MCP server behind Tollgate
// (tests/mcp_agents.rs): its Streamable HTTP transport with an OAuth client provider meets
// the 401, reads the protected resource metadata it names, discovers Tollgate, registers
// dynamically, sends the browser (headless Chromium, login.mjs) through the hosted login
// and consent pages, redeems the code with PKCE and the resource indicator, and calls a
// tool. Nothing here is Tollgate-specific but the credentials.
//
// node mcp_client.mjs --url MCP_URL --username NAME      (password in $RP_PASSWORD)
// Prints one JSON line: the registration, the token response's shape, the tool's answer.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { withBrowser, authorize } from './login.mjs';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
}

const url = new URL(arg('url'));
const username = arg('username');
const password = process.env.RP_PASSWORD;
// Nothing listens here: login.mjs reads the code from the redirect, as a native app does.
const redirectUrl = `http://127.0.0.1:${Number(arg('callback-port'))}/callback`;

const state = { client: undefined, tokens: undefined, verifier: undefined, authorizeUrl: undefined };

const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: 'tollgate-mcp-test',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientInformation: () => state.client,
  saveClientInformation: (info) => {
    state.client = info;
  },
  tokens: () => state.tokens,
  saveTokens: (t) => {
    state.tokens = t;
  },
  redirectToAuthorization: (u) => {
    state.authorizeUrl = u.toString();
  },
  saveCodeVerifier: (v) => {
    state.verifier = v;
  },
  codeVerifier: () => state.verifier,
};

try {
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const client = new Client({ name: 'tollgate-mcp-test', version: '1.0.0' });
  let needed = false;
  try {
    await client.connect(first);
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    needed = true;
  }
  if (!needed || !state.authorizeUrl) throw new Error('the server let the client in without a token');
  const redirected = await withBrowser((page) =>
    authorize(page, { url: state.authorizeUrl, redirectPrefix: redirectUrl, username, password }),
  );
  const code = new URL(redirected).searchParams.get('code');
  if (!code) throw new Error(`no code in ${redirected}`);
  await first.finishAuth(code);

  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const again = new Client({ name: 'tollgate-mcp-test', version: '1.0.0' });
  await again.connect(transport);
  const tools = await again.listTools();
  const result = await again.callTool({ name: 'whoami', arguments: {} });
  await again.close();
  const authorizeParams = Object.fromEntries(new URL(state.authorizeUrl).searchParams);
  console.log(
    JSON.stringify({
      client_id: state.client?.client_id ?? null,
      authorize: {
        resource: authorizeParams.resource ?? null,
        code_challenge_method: authorizeParams.code_challenge_method ?? null,
        scope: authorizeParams.scope ?? null,
      },
      token_type: state.tokens?.token_type ?? null,
      has_refresh_token: Boolean(state.tokens?.refresh_token),
      access_token: state.tokens?.access_token ?? null,
      tools: tools.tools.map((t) => t.name),
      whoami: JSON.parse(result.content[0].text),
    }),
  );
} catch (e) {
  console.error(e?.stack || String(e));
  process.exit(1);
}
