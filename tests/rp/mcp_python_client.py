"""The Python MCP SDK (PyPI `mcp`) client against an MCP server behind Tollgate
(tests/oidc_relying_parties.rs): its Streamable HTTP client with the SDK's
OAuthClientProvider meets the 401, follows `resource_metadata`, discovers Tollgate,
registers dynamically, signs the user in (the browser step is `node login.mjs`: headless
Chromium on the hosted login and consent pages), and calls a tool.

python mcp_python_client.py --url MCP_URL --username NAME --callback-port PORT
(the password in $RP_PASSWORD). Prints one JSON line; exits 1 with the reason on stderr.
"""

import argparse
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

HERE = Path(__file__).resolve().parent


class Memory(TokenStorage):
    """Tokens and the registration, for this run only."""

    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull):
        self.client = client_info


async def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--callback-port", required=True, type=int)
    args = p.parse_args()
    # Nothing listens here: login.mjs reads the code from the redirect.
    redirect = f"http://127.0.0.1:{args.callback_port}/callback"
    seen = {}

    async def redirect_handler(url: str) -> None:
        seen["authorize_url"] = url

    async def callback_handler() -> AuthorizationCodeResult:
        node = os.environ.get("NODE") or shutil.which("node")
        proc = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "login.mjs"),
            "--url",
            seen["authorize_url"],
            "--redirect-prefix",
            redirect,
            "--username",
            args.username,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"browser sign-in failed: {err.decode().strip()}")
        q = parse_qs(urlparse(out.decode().strip().splitlines()[-1]).query)
        return AuthorizationCodeResult(
            code=q["code"][0], state=q.get("state", [None])[0], iss=q.get("iss", [None])[0]
        )

    storage = Memory()
    auth = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[redirect],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            client_name="tollgate-mcp-python-test",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=auth, timeout=60) as http:
        async with streamable_http_client(args.url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool("whoami", {})
    authorize = parse_qs(urlparse(seen.get("authorize_url", "")).query)
    return {
        "client_id": storage.client.client_id if storage.client else None,
        "authorize_resource": authorize.get("resource", [None])[0],
        "access_token": storage.tokens.access_token if storage.tokens else None,
        "tools": [t.name for t in tools.tools],
        "whoami": json.loads(result.content[0].text),
    }


if __name__ == "__main__":
    try:
        print(json.dumps(asyncio.run(main())))
    except Exception as e:  # noqa: BLE001 - the reason goes to the test's failure message
        import traceback

        traceback.print_exception(e, file=sys.stderr)
        sys.exit(1)
