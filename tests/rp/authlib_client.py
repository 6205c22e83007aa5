"""A relying party built on Authlib, signing in through Tollgate from its issuer URL alone.

Discovery, then Authlib's OAuth2Session (requests) with PKCE S256 for the authorization
code flow; the browser step is `node login.mjs` (headless Chromium fills Tollgate's hosted
form). The ID token is checked by Authlib's own OpenID Connect code (OpenIDMixin.parse_id_token:
signature against the JWKS with the algorithms the discovery document names, then
CodeIDToken: iss, aud, exp, iat, nonce, azp, at_hash), userinfo is fetched with the access
token, a refresh must rotate the refresh token, and the rotated-out one must be refused.

    python authlib_client.py --issuer URL --client-id ID --redirect-uri URI --username NAME
        [--post-logout-redirect-uri URI] [--scope "openid email profile"] [--timeout S]

$RP_PASSWORD is the user's password; $RP_CLIENT_SECRET, when set, makes the client
confidential (client_secret_basic), else public (token_endpoint_auth_method none).
Prints one JSON summary on stdout; any failed step exits 1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from authlib.integrations.requests_client import OAuth2Session

HERE = Path(__file__).resolve().parent


class Failure(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Failure(msg)


class RelyingParty(OpenIDMixin):
    """Authlib's framework-free OpenID Connect half: OpenIDMixin needs only the discovered
    metadata, the client id and an HTTP session; it does the JWKS fetch, ID token
    validation, userinfo and logout URL itself."""

    def __init__(self, metadata: dict, session: OAuth2Session):
        self.server_metadata = metadata
        self.session = session
        self.client_id = session.client_id

    def load_server_metadata(self) -> dict:
        return self.server_metadata

    def _get_session(self):
        return contextlib.nullcontext(self.session)

    def get(self, url, **kwargs):
        return self.session.get(url, **kwargs)


def browser_login(url: str, redirect_prefix: str, username: str, password: str, timeout: float) -> str:
    """Runs login.mjs: Chromium signs in on the hosted page; returns the redirect URL."""
    node = os.environ.get("NODE") or shutil.which("node")
    check(node is not None, "node is not installed")
    env = dict(os.environ, RP_PASSWORD=password)
    try:
        out = subprocess.run(
            [
                node,
                str(HERE / "login.mjs"),
                "--url",
                url,
                "--redirect-prefix",
                redirect_prefix,
                "--username",
                username,
                "--timeout-ms",
                str(int(timeout * 1000)),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise Failure(f"login.mjs did not finish within {timeout + 30} s") from e
    if out.returncode != 0:
        raise Failure(f"browser sign-in failed: {out.stderr.strip()}")
    lines = out.stdout.strip().splitlines()
    check(bool(lines), "login.mjs printed no URL")
    return lines[-1]


def jwt_header(token: str) -> dict:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--issuer", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--redirect-uri", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--post-logout-redirect-uri")
    p.add_argument("--scope", default="openid email profile")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    password = os.environ.get("RP_PASSWORD")
    check(bool(password), "$RP_PASSWORD is required")
    secret = os.environ.get("RP_CLIENT_SECRET")

    # Discovery (OpenID Connect Discovery 1.0 §4: the issuer must match exactly).
    http = requests.Session()
    http.trust_env = False  # loopback only: no proxy from the environment
    r = http.get(a.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=a.timeout)
    r.raise_for_status()
    metadata = r.json()
    check(metadata.get("issuer") == a.issuer, f"discovered issuer {metadata.get('issuer')!r} is not {a.issuer!r}")
    check("S256" in metadata.get("code_challenge_methods_supported", []), "S256 PKCE is not advertised")

    session = OAuth2Session(
        client_id=a.client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=a.scope,
        redirect_uri=a.redirect_uri,
        code_challenge_method="S256",
        default_timeout=a.timeout,
    )
    session.trust_env = False
    rp = RelyingParty(metadata, session)

    # Authorization request with PKCE S256, state and nonce; the browser signs in.
    code_verifier = generate_token(64)
    nonce = generate_token(24)
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=code_verifier, nonce=nonce
    )
    check("code_challenge_method=S256" in url, f"no S256 challenge in {url}")
    redirected_to = browser_login(url, a.redirect_uri, a.username, password, a.timeout)
    response = {k: v[0] for k, v in parse_qs(urlsplit(redirected_to).query).items()}
    check("error" not in response, f"authorization error: {response}")
    # RFC 9207: Authlib has no check of its own for the response's iss; this is it.
    if metadata.get("authorization_response_iss_parameter_supported"):
        check(response.get("iss") == a.issuer, f"authorization response iss {response.get('iss')!r}")

    # Token request: Authlib checks state against the response and sends the verifier.
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=redirected_to,
        state=state,
        code_verifier=code_verifier,
    )
    check("id_token" in token, "no id_token in the token response")
    header = jwt_header(token["id_token"])
    check(header.get("alg") == "RS256", f"ID token alg {header.get('alg')!r}")
    claims = rp.parse_id_token(
        token,
        nonce,
        claims_options={
            "iss": {"essential": True, "values": [a.issuer]},
            "aud": {"essential": True, "values": [a.client_id]},
            "sub": {"essential": True},
        },
    )
    userinfo = rp.userinfo()
    check(userinfo.get("sub") == claims["sub"], f"userinfo sub {userinfo.get('sub')!r} is not the ID token's")

    # Refresh: Authlib replaces the session's token; the refresh token must change.
    old_refresh = token.get("refresh_token")
    check(bool(old_refresh), "no refresh_token in the token response")
    refreshed = session.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    refreshed_userinfo = rp.userinfo()

    logout = None
    if a.post_logout_redirect_uri:
        # RP-initiated logout URL as Authlib builds it; its answer is read without a
        # browser (this RP's browser was login.mjs's, already gone).
        out = rp.create_logout_url(
            post_logout_redirect_uri=a.post_logout_redirect_uri, id_token_hint=token["id_token"]
        )
        lr = http.get(out["url"], allow_redirects=False, timeout=a.timeout)
        location = lr.headers.get("location", "")
        back = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        logout = {
            "status": lr.status_code,
            "redirected_to": location.split("?")[0],
            "state_ok": back.get("state") == out["state"],
        }

    # The rotated-out refresh token is refused (last: reuse may revoke the family).
    try:
        session.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
        old = {"refused": False}
    except OAuthError as e:
        old = {"refused": True, "error": e.error}

    return {
        "issuer": metadata["issuer"],
        "authorization_response": {"iss": response.get("iss"), "has_code": "code" in response},
        "id_token_header": header,
        "claims": dict(claims),
        "token_type": token.get("token_type"),
        "userinfo": dict(userinfo),
        "refreshed": {
            "rotated": bool(refreshed.get("refresh_token")) and refreshed["refresh_token"] != old_refresh,
            "new_access_token": refreshed.get("access_token") != token.get("access_token"),
            "userinfo_sub": refreshed_userinfo.get("sub"),
        },
        "logout": logout,
        "old_refresh_token": old,
    }


if __name__ == "__main__":
    try:
        summary = main()
    except (Failure, OAuthError, requests.RequestException, KeyError, ValueError) as e:
        detail = getattr(e, "description", None)
        print(f"authlib_client.py: {type(e).__name__}: {e}{f' ({detail})' if detail else ''}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # joserfc's validation errors and anything unforeseen
        print(f"authlib_client.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))
