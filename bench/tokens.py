#!/usr/bin/env python3
"""Signs the RS256 access tokens of the benchmark with the key bench/run made.

Every token copies the claims and header of TEMPLATE (a token Tollgate's own token
endpoint issued with that key: same kid, typ, iss, aud, sub, email, role, scope,
client_id) and gets its own jti, so the peers and Tollgate all validate the very same
tokens. Nothing here talks to the network.

  tokens.py info TEMPLATE                     "kid iss aud sub email" of TEMPLATE
  tokens.py jwks KEY KID                      the public JWKS (one key, pinned kid)
  tokens.py pool KEY TEMPLATE N OUT           N distinct valid tokens, one a line
  tokens.py cases KEY TEMPLATE OUT            "name token" lines for the smoke checks:
                                              good, expired, wrong_aud, wrong_iss,
                                              bad_sig, wrong_kid, alg_none
"""
import base64
import json
import sys
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def template(path):
    with open(path) as f:
        token = f.read().strip()
    h, p, _ = token.split(".")
    return json.loads(unb64(h)), json.loads(unb64(p))


def sign(key, header, claims) -> str:
    signing_input = (
        b64(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64(sig)


def fresh(claims, **over):
    now = int(time.time())
    c = dict(claims)
    c.update(iat=now, exp=now + 3600, jti=str(uuid.uuid4()))
    c.update(over)
    return c


def cmd_info(tmpl_path):
    header, claims = template(tmpl_path)
    aud = claims.get("aud")
    if isinstance(aud, list):
        aud = aud[0]
    print(header["kid"], claims["iss"], aud, claims["sub"], claims.get("email", ""))


def cmd_jwks(key_path, kid):
    pub = load_key(key_path).public_key().public_numbers()

    def uint(n):
        return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    print(json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                                "n": uint(pub.n), "e": uint(pub.e)}]}, separators=(",", ":")))


def cmd_pool(key_path, tmpl_path, n, out):
    key = load_key(key_path)
    header, claims = template(tmpl_path)
    with open(out, "w") as f:
        for _ in range(int(n)):
            f.write(sign(key, header, fresh(claims)) + "\n")


def cmd_cases(key_path, tmpl_path, out):
    key = load_key(key_path)
    header, claims = template(tmpl_path)
    now = int(time.time())
    good = sign(key, header, fresh(claims))
    h, p, s = good.split(".")
    # Flip one byte in the middle of the signature: right length, wrong value.
    sig = bytearray(unb64(s))
    sig[len(sig) // 2] ^= 0x01
    cases = {
        "good": good,
        # An hour past exp: beyond every configuration's clock-skew allowance.
        "expired": sign(key, header, fresh(claims, iat=now - 7200, exp=now - 3600)),
        "wrong_aud": sign(key, header, fresh(claims, aud="someone-else")),
        "wrong_iss": sign(key, header, fresh(claims, iss="http://127.0.0.1:1/")),
        "bad_sig": h + "." + p + "." + b64(bytes(sig)),
        "wrong_kid": sign(key, dict(header, kid="not-our-kid"), fresh(claims)),
        "alg_none": b64(json.dumps(dict(header, alg="none")).encode()) + "." + p + ".",
    }
    with open(out, "w") as f:
        for name, token in cases.items():
            f.write(f"{name} {token}\n")


def main(argv):
    cmds = {"info": (cmd_info, 1), "jwks": (cmd_jwks, 2), "pool": (cmd_pool, 4), "cases": (cmd_cases, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        sys.stderr.write(__doc__)
        return 2
    cmds[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
