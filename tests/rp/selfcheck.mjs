// Checks the browser half of the harness without any authorization server: Chromium starts
// from $CHROMIUM_BIN (or /usr/bin/chromium) with login.mjs's flags and a fresh profile,
// loads a static page from a local node:http server, and `authorize` fills and submits its
// form and reports the request that left for the redirect prefix. The page is a plain HTML
// form; it stands in for nothing (tests/oidc_relying_parties.rs drives the real gateway).
//
// Prints one JSON line: {"command_line": [...], "redirected_to": "...", "posted": "..."}.

import http from 'node:http';
import { CHROMIUM_ARGS, authorize, withBrowser } from './login.mjs';

const TIMEOUT_MS = 30_000;

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  // The redirect prefix points at a port nothing listens on: authorize answers it inside
  // the browser, so the form's POST never leaves Chromium.
  const closed = http.createServer();
  const deadPort = await listen(closed);
  await new Promise((r) => closed.close(r));
  const redirectPrefix = `http://127.0.0.1:${deadPort}/cb`;

  const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>static form</title></head>
<body>
<form method="post" action="${redirectPrefix}?from=static">
  <input name="username" autocomplete="username">
  <input name="password" type="password" autocomplete="current-password">
  <button type="submit">Continue</button>
</form>
</body></html>`;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(page) });
      res.end(page);
    } else {
      res.writeHead(404).end();
    }
  });
  const port = await listen(server);
  try {
    const out = await withBrowser(
      async (p, context) => {
        await p.goto('chrome://version', { timeout: TIMEOUT_MS });
        const commandLine = (await p.locator('#command_line').innerText()).split(/\s+/);
        let posted = null;
        context.on('request', (r) => {
          if (r.url().startsWith(redirectPrefix) && r.method() === 'POST') posted = r.postData();
        });
        const redirectedTo = await authorize(p, {
          url: `http://127.0.0.1:${port}/`,
          redirectPrefix,
          username: 'ann',
          password: 'static page password',
          timeoutMs: TIMEOUT_MS,
        });
        return { command_line: commandLine, redirected_to: redirectedTo, posted };
      },
      { timeoutMs: TIMEOUT_MS },
    );
    const missing = CHROMIUM_ARGS.filter((f) => !out.command_line.includes(f));
    if (missing.length) throw new Error(`Chromium runs without ${missing.join(' ')}`);
    if (!out.command_line.some((a) => a.startsWith('--user-data-dir=')))
      throw new Error('Chromium runs without its own --user-data-dir');
    if (out.redirected_to !== `${redirectPrefix}?from=static`)
      throw new Error(`redirected to ${out.redirected_to}`);
    if (out.posted !== 'username=ann&password=static+page+password')
      throw new Error(`the form posted ${JSON.stringify(out.posted)}`);
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    server.close();
  }
}

main().catch((e) => {
  process.stderr.write(`selfcheck.mjs: ${e?.message ?? e}\n`);
  process.exit(1);
});
