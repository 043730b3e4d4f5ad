"""OAuth 2.1 client credentials with authlib, a client library nobody here wrote, reading only
the discovery document: client_secret_basic and private_key_jwt, then introspection of the
tokens by a resource server that authenticates as a client.

Usage: authlib_check.py ISSUER ADMIN_TOKEN
"""
import json
import sys
import uuid

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey
from authlib.oauth2.rfc7523 import PrivateKeyJWT

issuer, admin = sys.argv[1], sys.argv[2]
meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
token_endpoint, introspection_endpoint = meta["token_endpoint"], meta["introspection_endpoint"]
assert "client_credentials" in meta["grant_types_supported"], meta
assert {"client_secret_basic", "private_key_jwt"} <= set(meta["token_endpoint_auth_methods_supported"]), meta


def register(metadata):
    resp = requests.post(f"{issuer}/api/v1/clients", json=metadata, headers={"authorization": f"Bearer {admin}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def check(token, client_id, scope):
    payload = token["access_token"].split(".")[1]
    claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["client_id"] == client_id and claims["sub"] == client_id, claims
    assert token["token_type"].lower() == "bearer" and token["scope"] == scope, token
    return claims


# client_secret_basic
basic = register({"client_name": "authlib basic", "scope": "reports:read reports:write", "audience": "reports-api"})
session = OAuth2Session(basic["client_id"], basic["client_secret"], scope="reports:read",
                        token_endpoint_auth_method="client_secret_basic")
token = session.fetch_token(token_endpoint, grant_type="client_credentials")
claims = check(token, basic["client_id"], "reports:read")
assert claims["aud"] == "reports-api", claims
print(f"authlib: client_secret_basic -> token for {basic['client_id']} scope {token['scope']!r}")

# private_key_jwt, with a key pair the client made itself
key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
public = key.as_dict(is_private=False)
public["kid"] = uuid.uuid4().hex
public["alg"] = "RS256"
public["use"] = "sig"
signer = register({"client_name": "authlib signer", "token_endpoint_auth_method": "private_key_jwt",
                   "scope": "jobs:run", "jwks": {"keys": [public]}})
private_pem = key.as_pem(is_private=True)
session = OAuth2Session(signer["client_id"], private_pem, scope="jobs:run",
                        token_endpoint_auth_method="private_key_jwt")
session.register_client_auth_method(PrivateKeyJWT(token_endpoint, headers={"kid": public["kid"]}))
token2 = session.fetch_token(token_endpoint, grant_type="client_credentials")
check(token2, signer["client_id"], "jobs:run")
print(f"authlib: private_key_jwt -> token for {signer['client_id']} scope {token2['scope']!r}")

# A resource server introspects both tokens, authenticating as a client itself.
rs = register({"client_name": "authlib resource server"})
rs_session = OAuth2Session(rs["client_id"], rs["client_secret"], token_endpoint_auth_method="client_secret_basic")
for t, owner in ((token, basic["client_id"]), (token2, signer["client_id"])):
    resp = rs_session.introspect_token(introspection_endpoint, token=t["access_token"])
    answer = resp.json()
    assert resp.status_code == 200 and answer["active"] is True and answer["client_id"] == owner, answer
resp = rs_session.introspect_token(introspection_endpoint, token="not-a-token")
assert resp.json() == {"active": False}, resp.text
print("authlib: the resource server introspected 2 live tokens and 1 bogus one")
