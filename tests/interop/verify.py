"""Verifies auth-service access tokens with PyJWT, knowing only the issuer's discovery URL.

Usage: verify.py DISCOVERY_URL AUDIENCE TOKEN [TOKEN...]
Prints one line per token and exits non-zero if any token does not verify.
"""
import json
import sys
import urllib.request

import jwt
from jwt import PyJWKClient


def main() -> int:
    discovery_url, audience, tokens = sys.argv[1], sys.argv[2], sys.argv[3:]
    with urllib.request.urlopen(discovery_url) as resp:
        meta = json.load(resp)
    client = PyJWKClient(meta["jwks_uri"], cache_keys=False)
    failed = 0
    for token in tokens:
        header = jwt.get_unverified_header(token)
        try:
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "ES256"],
                audience=audience,
                issuer=meta["issuer"],
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
            )
            print(f"pyjwt: ok {header['alg']} kid={header['kid']} sub={claims['sub']}")
        except Exception as exc:  # noqa: BLE001 - report every failure, then fail
            failed += 1
            print(f"pyjwt: FAILED {header.get('alg')} kid={header.get('kid')}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
