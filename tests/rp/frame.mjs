// The login page in a frame (tests/oidc_relying_parties.rs): headless Chromium opens a
// page of another origin that frames Tollgate's login page, and a control page that frames
// a document Tollgate lets be framed (its discovery document), so the test can tell "the
// browser refused" from "the harness saw nothing".
//
// node frame.mjs --login-url AUTHORIZE_URL --control-url URL
// Prints one JSON line: for each of `login` and `control`, the framed document's URL,
// whether it shows a password field, its text, and the console messages that name
// frame-ancestors.

import http from 'node:http';
import { withBrowser } from './login.mjs';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
}

const loginUrl = arg('login-url');
const controlUrl = arg('control-url');

// The framing pages come from a real server on 127.0.0.1 (another origin: another port).
// A page answered inside the browser would count as public to Chromium's private network
// rules, which then block any frame of 127.0.0.1 for a reason of their own.
const pages = new Map();
const framerServer = http.createServer((req, res) => {
  const body = pages.get(req.url);
  res.writeHead(body ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
  res.end(body ?? 'not found');
});
await new Promise((resolve) => framerServer.listen(0, '127.0.0.1', resolve));
const framer = `http://127.0.0.1:${framerServer.address().port}`;

async function framed(page, target, name) {
  const console = [];
  const onConsole = (m) => {
    if (m.text().includes('frame-ancestors')) console.push(m.text());
  };
  page.on('console', onConsole);
  const html = (src) =>
    `<!doctype html><title>framer</title><iframe id="f" src="${src}" onload="document.title='loaded'"></iframe>`;
  pages.set(`/${name}`, html(target));
  await page.goto(`${framer}/${name}`);
  // The iframe's load event fires whether the document loaded or the browser blocked it.
  await page.waitForFunction(() => document.title === 'loaded');
  const frame = page.frames().find((f) => f !== page.mainFrame());
  let text = '';
  let passwordFields = 0;
  try {
    text = (await frame.locator('body').innerText({ timeout: 2000 })).slice(0, 200);
    passwordFields = await frame.locator('input[name="password"]').count();
  } catch {
    // A blocked frame holds the browser's error page, which may refuse to be read.
  }
  if (name === 'login' && console.length === 0) {
    // The violation report is logged once the frame is refused; wait for it, bounded.
    await page
      .waitForEvent('console', { predicate: (m) => m.text().includes('frame-ancestors'), timeout: 5000 })
      .then((m) => console.push(m.text()))
      .catch(() => {});
  }
  page.off('console', onConsole);
  return { url: frame ? frame.url() : null, password_fields: passwordFields, text, console };
}

try {
  const out = await withBrowser(async (page) => ({
    control: await framed(page, controlUrl, 'control'),
    login: await framed(page, loginUrl, 'login'),
  }));
  console.log(JSON.stringify(out));
  framerServer.close();
} catch (e) {
  console.error(e?.stack || String(e));
  process.exit(1);
}
