// A relying party built on openid-client 6 (and oauth4webapi under it), signing in through
// Tollgate from its issuer URL alone: discovery, authorization code + PKCE S256 with the
// browser step done by login.mjs in headless Chromium, the code exchanged and the ID token
// validated (signature against the JWKS, iss, aud, exp, iat, nonce, and the RFC 9207 `iss`
// of the authorization response), userinfo, a refresh that must rotate the refresh token,
// single sign-on for a second client without the password, RP-initiated logout, and
// prompt=none refused after it.
//
// node openid_client.mjs --issuer URL --client-id ID --redirect-uri URI --username NAME
//   [--post-logout-redirect-uri URI] [--sso-client-id ID] [--scope "openid email profile"]
//   [--timeout-ms N]
// $RP_PASSWORD is the user's password; $RP_CLIENT_SECRET, when set, makes the client
// confidential (client_secret_basic), else it is public (token_endpoint_auth_method none).
//
// Prints one JSON summary on stdout; any failed step exits 1 with the reason on stderr.

import { createHash } from 'node:crypto';
import * as client from 'openid-client';
import { authorize, parseArgs, withBrowser } from './login.mjs';

const args = parseArgs(process.argv.slice(2), {
  issuer: 'value',
  'client-id': 'value',
  'redirect-uri': 'value',
  'post-logout-redirect-uri': 'value',
  'sso-client-id': 'value',
  username: 'value',
  scope: 'value',
  'timeout-ms': 'value',
});
for (const k of ['issuer', 'client-id', 'redirect-uri', 'username']) {
  if (!args[k]) fail(`--${k} is required`);
}
const password = process.env.RP_PASSWORD;
if (!password) fail('$RP_PASSWORD is required');
const secret = process.env.RP_CLIENT_SECRET;
const scope = args.scope ?? 'openid email profile';
const timeoutMs = Number(args['timeout-ms'] ?? 30_000);
const redirectUri = args['redirect-uri'];

function fail(msg) {
  process.stderr.write(`openid_client.mjs: ${msg}\n`);
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/// Discovery from the issuer URL; http:// issuers need allowInsecureRequests, and ID
/// tokens from the token endpoint are only signature-checked with enableNonRepudiationChecks
/// (oauth4webapi relies on TLS otherwise, and there is no TLS here).
async function configure(clientId) {
  const metadata = { redirect_uris: [redirectUri], id_token_signed_response_alg: 'RS256' };
  let auth;
  if (secret) {
    metadata.client_secret = secret;
    auth = client.ClientSecretBasic(secret);
  } else {
    metadata.token_endpoint_auth_method = 'none';
    auth = client.None();
  }
  return client.discovery(new URL(args.issuer), clientId, metadata, auth, {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
    timeout: Math.ceil(timeoutMs / 1000),
  });
}

function decodeSegment(jwt, i) {
  return JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString('utf8'));
}

/// OIDC Core 3.1.3.6: the left half of SHA-256 of the access token, base64url.
function atHash(accessToken) {
  const digest = createHash('sha256').update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

/// One authorization request in `page`; returns the redirect URL and the checks to redeem it.
async function authorizationRequest(page, config, extra, credentials) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    ...extra,
  });
  const redirectedTo = await authorize(page, {
    url: url.href,
    redirectPrefix: redirectUri,
    ...credentials,
    timeoutMs,
  });
  return { redirectedTo: new URL(redirectedTo), checks: { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true } };
}

async function redeem(config, { redirectedTo, checks }) {
  const tokens = await client.authorizationCodeGrant(config, redirectedTo, checks);
  check(typeof tokens.id_token === 'string', 'no id_token in the token response');
  const claims = tokens.claims();
  check(claims, 'no ID token claims');
  return { tokens, claims };
}

async function main() {
  const config = await configure(args['client-id']);
  const server = config.serverMetadata();
  check(server.issuer === args.issuer, `discovered issuer ${server.issuer} is not ${args.issuer}`);

  const summary = await withBrowser(
    async (page) => {
      // 1. Sign in on the hosted page; the code comes back with state and iss.
      const first = await authorizationRequest(page, config, {}, { username: args.username, password });
      const response = Object.fromEntries(first.redirectedTo.searchParams);
      const { tokens, claims } = await redeem(config, first);
      const header = decodeSegment(tokens.id_token, 0);
      check(header.alg === 'RS256', `ID token alg ${header.alg}`);

      // 2. Userinfo with the access token (openid-client checks its sub against the ID token's).
      const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

      // 3. Refresh: a new refresh token replaces the old one.
      check(typeof tokens.refresh_token === 'string', 'no refresh_token in the token response');
      const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
      const refreshedUserinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
      const refreshedClaims = refreshed.id_token ? refreshed.claims() : undefined;

      // 4. Single sign-on: another client (or the same one) signs in with the browser
      //    session alone; a login form here fails (no credentials are given).
      const ssoClientId = args['sso-client-id'] ?? args['client-id'];
      const ssoConfig = ssoClientId === args['client-id'] ? config : await configure(ssoClientId);
      const sso = await redeem(ssoConfig, await authorizationRequest(page, ssoConfig, { prompt: 'none' }, {}));

      // 5. RP-initiated logout ends the browser session; prompt=none is then refused.
      let logout = null;
      let afterLogout = null;
      if (args['post-logout-redirect-uri']) {
        check(server.end_session_endpoint, 'the discovery document has no end_session_endpoint');
        const logoutState = client.randomState();
        const endSession = client.buildEndSessionUrl(config, {
          id_token_hint: tokens.id_token,
          post_logout_redirect_uri: args['post-logout-redirect-uri'],
          state: logoutState,
        });
        const landed = new URL(
          await authorize(page, { url: endSession.href, redirectPrefix: args['post-logout-redirect-uri'], timeoutMs }),
        );
        logout = { redirected_to: landed.origin + landed.pathname, state_ok: landed.searchParams.get('state') === logoutState };
        const again = await authorizationRequest(page, config, { prompt: 'none' }, {});
        const params = again.redirectedTo.searchParams;
        afterLogout = {
          error: params.get('error'),
          code: params.has('code'),
          state_ok: params.get('state') === again.checks.expectedState,
          iss: params.get('iss'),
        };
      }

      // 6. The rotated-out refresh token is refused (last: reuse may revoke the family).
      let oldRefresh;
      try {
        await client.refreshTokenGrant(config, tokens.refresh_token);
        oldRefresh = { refused: false };
      } catch (e) {
        oldRefresh = { refused: true, error: e?.error ?? e?.code ?? String(e?.message ?? e) };
      }

      return {
        issuer: server.issuer,
        discovery: {
          authorization_endpoint: server.authorization_endpoint,
          token_endpoint: server.token_endpoint,
          userinfo_endpoint: server.userinfo_endpoint,
          end_session_endpoint: server.end_session_endpoint,
          jwks_uri: server.jwks_uri,
          code_challenge_methods_supported: server.code_challenge_methods_supported,
          authorization_response_iss_parameter_supported: server.authorization_response_iss_parameter_supported,
        },
        authorization_response: { iss: response.iss ?? null, has_code: 'code' in response },
        id_token_header: header,
        claims,
        at_hash_ok: claims.at_hash === atHash(tokens.access_token),
        token_type: tokens.token_type,
        userinfo,
        refreshed: {
          rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
          new_access_token: refreshed.access_token !== tokens.access_token,
          userinfo_sub: refreshedUserinfo.sub,
          id_token_sub: refreshedClaims?.sub ?? null,
        },
        sso: { client_id: ssoClientId, sub: sso.claims.sub, aud: sso.claims.aud, auth_time: sso.claims.auth_time, nonce_checked: true },
        logout,
        after_logout: afterLogout,
        old_refresh_token: oldRefresh,
      };
    },
    { timeoutMs },
  );
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((e) => {
  const detail = e?.error ? ` (${e.error}${e.error_description ? `: ${e.error_description}` : ''})` : '';
  let cause = '';
  if (e?.cause) {
    try {
      cause = ` cause: ${JSON.stringify(e.cause)}`;
    } catch {
      cause = ` cause: ${String(e.cause)}`;
    }
  }
  fail(`${e?.message ?? e}${detail}${cause}`);
});
