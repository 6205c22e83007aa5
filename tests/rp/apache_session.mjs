// A person using a site that Apache's mod_auth_openidc protects with Tollgate, in one
// headless Chromium: opening the protected page leads to Tollgate's login form; after
// signing in the browser is back on the page, which shows the claims Apache got; the
// page's "Sign out" link ends both sessions (mod_auth_openidc's, then Tollgate's through
// its end_session_endpoint) and lands on the signed-out page; opening the protected page
// again shows Tollgate's login form, not the page.
//
// node apache_session.mjs --app URL --signed-out URL --username NAME [--timeout-ms N]
// $RP_PASSWORD is the user's password. Prints one JSON summary on stdout; any failed
// step exits 1 with the reason on stderr.

import { authorize, parseArgs, withBrowser } from './login.mjs';

const args = parseArgs(process.argv.slice(2), {
  app: 'value',
  'signed-out': 'value',
  username: 'value',
  'timeout-ms': 'value',
});
const timeoutMs = Number(args['timeout-ms'] ?? 30_000);

function fail(msg) {
  process.stderr.write(`apache_session.mjs: ${msg}\n`);
  process.exit(1);
}

for (const k of ['app', 'signed-out', 'username']) if (!args[k]) fail(`--${k} is required`);
if (!process.env.RP_PASSWORD) fail('$RP_PASSWORD is required');

/// The claims the protected page echoes (tests/rp/apache/htdocs/app/index.shtml).
async function shownClaims(page) {
  const out = {};
  for (const id of ['remote_user', 'iss', 'sub', 'email', 'preferred_username', 'role']) {
    out[id] = (await page.locator(`#${id}`).innerText({ timeout: timeoutMs })).trim();
  }
  return out;
}

async function main() {
  const summary = await withBrowser(
    async (page) => {
      // 1. Sign in: protected page → Tollgate's form → mod_auth_openidc's callback → page.
      const landed = await authorize(page, {
        url: args.app,
        redirectPrefix: args.app,
        username: args.username,
        password: process.env.RP_PASSWORD,
        land: true,
        timeoutMs,
      });
      const claims = await shownClaims(page);
      const logoutHref = await page.locator('#logout').getAttribute('href', { timeout: timeoutMs });

      // 2. The Apache session alone opens the page again (no trip to Tollgate).
      await page.goto(args.app, { timeout: timeoutMs });
      const again = page.url().startsWith(args.app) ? (await shownClaims(page)).sub : null;

      // 3. Sign out with the page's own link; it ends on the signed-out page.
      const signedOut = await authorize(page, {
        url: new URL(logoutHref, page.url()).href,
        redirectPrefix: args['signed-out'],
        land: true,
        timeoutMs,
      });
      const signedOutText = (await page.locator('body').innerText({ timeout: timeoutMs })).trim();

      // 4. The protected page now asks for a login: Tollgate's form, since its own
      //    session ended too (with it still alive the browser would go straight back).
      await page.goto(args.app, { timeout: timeoutMs });
      const deadline = Date.now() + timeoutMs;
      const form = page.locator('form input[name="password"]');
      let askedForLogin = false;
      while (Date.now() < deadline) {
        await page.waitForLoadState('load', { timeout: Math.max(1, deadline - Date.now()) }).catch(() => {});
        if ((await form.count().catch(() => 0)) > 0) {
          askedForLogin = true;
          break;
        }
        if (page.url().startsWith(args.app) && (await page.locator('#sub').count().catch(() => 0)) > 0) break;
        await page.waitForTimeout(50);
      }
      const afterLogout = new URL(page.url());

      return {
        landed,
        claims,
        reopened_sub: again,
        logout_href: logoutHref,
        signed_out: signedOut,
        signed_out_text: signedOutText,
        after_logout: {
          asked_for_login: askedForLogin,
          url: afterLogout.origin + afterLogout.pathname,
          client_id: afterLogout.searchParams.get('client_id'),
        },
      };
    },
    { timeoutMs },
  );
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((e) => fail(e?.message ?? String(e)));
