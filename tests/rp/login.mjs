// The browser half of every relying party in tests/oidc_relying_parties.rs: headless
// Chromium (Debian's, never a downloaded build) signs in on Tollgate's hosted login page
// the way a person would, by filling the form and pressing its button, with no JavaScript
// of Tollgate's needed.
//
// As a module:  withBrowser(async (page) => { await authorize(page, {...}) })
// As a command: node login.mjs --url AUTHORIZE_URL --redirect-prefix REDIRECT_URI
//                 [--username NAME] [--consent allow|deny] [--land] [--timeout-ms N]
//               The password is read from $RP_PASSWORD (never from the command line, where
//               `ps` would show it). Prints the URL the browser was sent to on stdout;
//               exits 1 with the reason on stderr.
//
// Redirect handling: by default the request to the redirect URI is answered inside the
// browser (the relying party reads the code from the printed URL, as a native app does),
// so nothing has to listen there. With --land (`land: true`) the browser really goes there
// and the call returns once that page has loaded (mod_auth_openidc's callback, say).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

// The flags every test browser runs with: no sandbox (tests run as root), and nothing that
// would reach past this machine or the addresses the test names.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-gpu',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

const DEFAULT_TIMEOUT_MS = 30_000;

/// Runs `fn(page, context)` in a fresh Chromium profile (its own user-data-dir, removed
/// afterwards), so no cookie survives from one run to the next.
export async function withBrowser(fn, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'tollgate-rp-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: timeoutMs,
    });
    context.setDefaultTimeout(timeoutMs);
    context.setDefaultNavigationTimeout(timeoutMs);
    const page = context.pages()[0] ?? (await context.newPage());
    return await fn(page, context);
  } finally {
    if (context) await context.close().catch(() => {});
    // Chromium's helper processes may still be writing as the browser closes: retry,
    // and never let a leftover temp profile turn a finished sign-in into a failure.
    await rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }).catch(() => {});
  }
}

/// Opens `url` (an authorization request) and drives whatever Tollgate shows until the
/// browser is sent to a URL starting with `redirectPrefix`:
/// - the login form: fills `username` and `password` and presses its one submit button;
///   the form shown again after that means the credentials were refused (an error);
/// - a consent page: presses the button name="consent" value=`consent` (`allow` unless
///   told otherwise);
/// - nothing at all when a browser session already signs the user in (SSO, prompt=none).
/// Returns the redirect URL (`land: false`) or the URL of the loaded page (`land: true`).
/// Every wait is bounded by `timeoutMs`.
export async function authorize(
  page,
  { url, redirectPrefix, username, password, consent = 'allow', land = false, timeoutMs = DEFAULT_TIMEOUT_MS },
) {
  if (!url || !redirectPrefix) throw new Error('authorize: url and redirectPrefix are required');
  const deadline = Date.now() + timeoutMs;
  const context = page.context();
  const matches = (u) => u.startsWith(redirectPrefix);

  let redirectedTo = null;
  const onRequest = (req) => {
    if (!redirectedTo && req.isNavigationRequest() && matches(req.url())) redirectedTo = req.url();
  };
  context.on('request', onRequest);
  const route = async (r) => {
    await r.fulfill({
      status: 200,
      contentType: 'text/html; charset=utf-8',
      body: '<!doctype html><title>redirected</title><p>Back at the relying party.</p>',
    });
  };
  const routeMatcher = (u) => matches(u.href);
  if (!land) await context.route(routeMatcher, route);

  let submitted = 0;
  let consented = 0;
  try {
    await page.goto(url, { waitUntil: 'commit', timeout: timeoutMs }).catch((e) => {
      // A navigation that is itself redirected straight to the redirect URI (an existing
      // session) may end as "aborted" once the route answers it; the request was seen.
      if (!redirectedTo) throw e;
    });
    for (;;) {
      if (redirectedTo && !land) return redirectedTo;
      if (land && matches(page.url())) {
        await page.waitForLoadState('load', { timeout: Math.max(1, deadline - Date.now()) });
        if (matches(page.url())) return page.url();
      }
      if (Date.now() > deadline) {
        throw new Error(
          `not redirected to ${redirectPrefix} within ${timeoutMs} ms; the browser is at ${page.url()}: ${await pageText(page)}`,
        );
      }
      // Wait (bounded) for the current document, then look at what it offers.
      await page.waitForLoadState('domcontentloaded', { timeout: Math.max(1, deadline - Date.now()) }).catch(() => {});
      if (redirectedTo && !land) return redirectedTo;
      const consentButton = page.locator(`button[name="consent"][value="${consent}"]`);
      const passwordField = page.locator('form input[name="password"]');
      if ((await safeCount(passwordField)) > 0) {
        if (submitted > 0) {
          throw new Error(`the login form came back after submitting it (credentials refused?): ${await pageText(page)}`);
        }
        if (username === undefined || password === undefined) {
          throw new Error(`a login form is shown but no credentials were given: ${page.url()}`);
        }
        await submitLogin(page, username, password, deadline);
        submitted += 1;
        continue;
      }
      if ((await safeCount(consentButton)) > 0) {
        if (consented > 0) throw new Error(`the consent page came back after answering it: ${await pageText(page)}`);
        await Promise.all([
          page.waitForEvent('framenavigated', { timeout: Math.max(1, deadline - Date.now()) }).catch(() => {}),
          consentButton.first().click({ timeout: Math.max(1, deadline - Date.now()) }),
        ]);
        consented += 1;
        continue;
      }
      // Nothing to act on yet (a redirect in flight, or a page still loading).
      await page.waitForTimeout(50);
    }
  } finally {
    context.off('request', onRequest);
    if (!land) await context.unroute(routeMatcher, route).catch(() => {});
  }
}

/// Fills the one `<form method="post">` holding the password field and presses its one
/// submit button, then waits for the navigation that starts.
async function submitLogin(page, username, password, deadline) {
  const remaining = () => Math.max(1, deadline - Date.now());
  const forms = page.locator('form[method="post" i]:has(input[name="password"])');
  const n = await forms.count();
  if (n !== 1) throw new Error(`expected exactly one <form method="post"> with a password field, found ${n}`);
  const form = forms.first();
  const buttons = form.locator('button[type="submit"], button:not([type]), input[type="submit"]');
  const b = await buttons.count();
  if (b !== 1) throw new Error(`expected exactly one submit button in the login form, found ${b}`);
  await form.locator('input[name="username"]').fill(username, { timeout: remaining() });
  await form.locator('input[name="password"]').fill(password, { timeout: remaining() });
  await Promise.all([
    page.waitForEvent('framenavigated', { timeout: remaining() }).catch(() => {}),
    buttons.first().click({ timeout: remaining() }),
  ]);
}

async function safeCount(locator) {
  try {
    return await locator.count();
  } catch {
    return 0; // the document went away mid-query: look again on the next round
  }
}

async function pageText(page) {
  try {
    const t = await page.locator('body').innerText({ timeout: 2_000 });
    return JSON.stringify(t.replace(/\s+/g, ' ').trim().slice(0, 500));
  } catch {
    return '(no page text)';
  }
}

/// One sign-in in a fresh browser; returns the redirect URL (see `authorize`).
export async function browserLogin(opts) {
  return withBrowser((page) => authorize(page, opts), { timeoutMs: opts.timeoutMs });
}

export function parseArgs(argv, known) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (!(key in known)) throw new Error(`unknown option ${a}`);
    if (known[key] === 'flag') out[key] = true;
    else {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      out[key] = argv[++i];
    }
  }
  return out;
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    url: 'value',
    'redirect-prefix': 'value',
    username: 'value',
    consent: 'value',
    land: 'flag',
    'timeout-ms': 'value',
  });
  if (!args.url || !args['redirect-prefix']) throw new Error('--url and --redirect-prefix are required');
  const timeoutMs = args['timeout-ms'] ? Number(args['timeout-ms']) : DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error('--timeout-ms must be a positive number');
  const finalUrl = await browserLogin({
    url: args.url,
    redirectPrefix: args['redirect-prefix'],
    username: args.username,
    password: process.env.RP_PASSWORD,
    consent: args.consent ?? 'allow',
    land: Boolean(args.land),
    timeoutMs,
  });
  process.stdout.write(finalUrl + '\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    process.stderr.write(`login.mjs: ${e?.message ?? e}\n`);
    process.exit(1);
  });
}
