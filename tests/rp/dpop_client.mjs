// DPoP from a client library that implements it (oauth4webapi, under openid-client 6),
// against Tollgate (tests/oidc_relying_parties.rs): discovery, a client credentials grant
// with a DPoP proof, then a request to a route behind Tollgate with the bound token and a
// fresh proof; then the same token sent as a plain Bearer token.
//
// node dpop_client.mjs --issuer URL --client-id ID --resource-url URL
// (the client secret in $RP_CLIENT_SECRET). Prints one JSON line.

import * as oauth from 'oauth4webapi';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
}

const issuer = new URL(arg('issuer'));
const client = { client_id: arg('client-id') };
const clientAuth = oauth.ClientSecretBasic(process.env.RP_CLIENT_SECRET);
const resourceUrl = new URL(arg('resource-url'));
// Everything here is http on 127.0.0.1.
const insecure = { [oauth.allowInsecureRequests]: true };

try {
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  );
  const keyPair = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, keyPair);
  const grant = () =>
    oauth.clientCredentialsGrantRequest(as, client, clientAuth, new URLSearchParams(), { DPoP, ...insecure });
  let response = await grant();
  // A server that requires nonces answers use_dpop_nonce once; the handle keeps the nonce.
  let tokens;
  try {
    tokens = await oauth.processClientCredentialsResponse(as, client, response);
  } catch (e) {
    if (!oauth.isDPoPNonceError(e)) throw e;
    tokens = await oauth.processClientCredentialsResponse(as, client, await grant());
  }
  const call = async (useDpop) => {
    try {
      const r = await oauth.protectedResourceRequest(
        tokens.access_token,
        'GET',
        resourceUrl,
        new Headers(),
        null,
        useDpop ? { DPoP, ...insecure } : insecure,
      );
      return { status: r.status, www_authenticate: r.headers.get('www-authenticate') };
    } catch (e) {
      // The library turns a 401 with a challenge into this error, the response with it.
      if (!(e instanceof oauth.WWWAuthenticateChallengeError)) throw e;
      return { status: e.response?.status ?? null, www_authenticate: e.response?.headers.get('www-authenticate') ?? null };
    }
  };
  const withProof = await call(true);
  const again = await call(true);
  const asBearer = await call(false);
  console.log(
    JSON.stringify({
      dpop_signing_alg_values_supported: as.dpop_signing_alg_values_supported ?? null,
      token_type: tokens.token_type,
      access_token: tokens.access_token,
      with_proof: withProof,
      again_with_a_fresh_proof: again,
      as_bearer: asBearer,
    }),
  );
} catch (e) {
  console.error(e?.stack || String(e));
  process.exit(1);
}
