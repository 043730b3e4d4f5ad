"""OAuth 2.1 and OpenID Connect with authlib, a client library nobody here wrote, reading only
the discovery documents: client_credentials with client_secret_basic and private_key_jwt, then
introspection of the tokens by a resource server that authenticates as a client; then the
authorization code flow with PKCE as a public client, with the ID token validated, userinfo and
a refresh.

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
                   "scope": "jobs:run", "audience": "reports-api", "jwks": {"keys": [public]}})
private_pem = key.as_pem(is_private=True)
session = OAuth2Session(signer["client_id"], private_pem, scope="jobs:run",
                        token_endpoint_auth_method="private_key_jwt")
session.register_client_auth_method(PrivateKeyJWT(token_endpoint, headers={"kid": public["kid"]}))
token2 = session.fetch_token(token_endpoint, grant_type="client_credentials")
check(token2, signer["client_id"], "jobs:run")
print(f"authlib: private_key_jwt -> token for {signer['client_id']} scope {token2['scope']!r}")

# The resource server of that audience introspects both tokens, authenticating as a client
# itself; a client registered for another audience learns nothing of them.
rs = register({"client_name": "authlib resource server", "audience": "reports-api"})
rs_session = OAuth2Session(rs["client_id"], rs["client_secret"], token_endpoint_auth_method="client_secret_basic")
for t, owner in ((token, basic["client_id"]), (token2, signer["client_id"])):
    resp = rs_session.introspect_token(introspection_endpoint, token=t["access_token"])
    answer = resp.json()
    assert resp.status_code == 200 and answer["active"] is True and answer["client_id"] == owner, answer
resp = rs_session.introspect_token(introspection_endpoint, token="not-a-token")
assert resp.json() == {"active": False}, resp.text
other = register({"client_name": "authlib other resource server", "audience": "billing-api"})
other_session = OAuth2Session(other["client_id"], other["client_secret"], token_endpoint_auth_method="client_secret_basic")
resp = other_session.introspect_token(introspection_endpoint, token=token["access_token"])
assert resp.json() == {"active": False}, resp.text
print("authlib: the resource server introspected 2 live tokens and 1 bogus one; another audience's server learned nothing")

# The authorization code flow with PKCE, as a public client (a single-page or mobile app: no
# secret), from the OpenID configuration; the hosted pages are driven over HTTP the way a
# browser submits them (scripts/browser-test.sh drives them in Chromium).
import html.parser
import secrets

from authlib.common.security import generate_token
from authlib.jose import jwt
from authlib.oidc.core import CodeIDToken

oidc = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
assert oidc["code_challenge_methods_supported"] == ["S256"] and "none" in oidc["token_endpoint_auth_methods_supported"], oidc
redirect_uri = "http://127.0.0.1:9/callback"
spa = register({"client_name": "authlib app", "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [redirect_uri],
                "scope": "openid profile email offline_access"})
assert "client_secret" not in spa, spa
username, password = f"ada_{secrets.token_hex(4)}", "an authlib user password"
resp = requests.post(f"{issuer}/api/v1/users/signup", timeout=10,
                     json={"username": username, "email": f"{username}@example.com", "password": password})
assert resp.status_code == 201, resp.text


class Form(html.parser.HTMLParser):
    """The hidden fields of a hosted page's form."""

    def __init__(self, text):
        super().__init__()
        self.fields = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


app = OAuth2Session(spa["client_id"], scope="openid profile email offline_access", redirect_uri=redirect_uri,
                    token_endpoint_auth_method="none", code_challenge_method="S256")
verifier = generate_token(64)
nonce = generate_token(20)
url, state = app.create_authorization_url(oidc["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
browser = requests.Session()
sign_in_page = browser.get(url, timeout=10)
assert sign_in_page.status_code == 200 and "authlib app" in sign_in_page.text, sign_in_page.text
form = Form(sign_in_page.text).fields | {"username": username, "password": password}
consent_page = browser.post(oidc["authorization_endpoint"], data=form, allow_redirects=False, timeout=10)
assert consent_page.status_code == 200 and "Allow access?" in consent_page.text, consent_page.text
back = browser.post(f"{issuer}/oauth2/consent", data=Form(consent_page.text).fields | {"decision": "allow"},
                    allow_redirects=False, timeout=10)
assert back.status_code == 303 and back.headers["location"].startswith(redirect_uri), back.headers
token = app.fetch_token(oidc["token_endpoint"], authorization_response=back.headers["location"], state=state,
                        code_verifier=verifier)
assert {"access_token", "id_token", "refresh_token"} <= set(token), token

# The ID token, checked by authlib's OpenID Connect claims (iss, aud, exp, iat, nonce, azp and
# at_hash against the access token), with the key set the discovery document names.
keys = JsonWebKey.import_key_set(requests.get(oidc["jwks_uri"], timeout=10).json())
claims = jwt.decode(token["id_token"], keys, claims_cls=CodeIDToken,
                    claims_options={"iss": {"essential": True, "value": oidc["issuer"]}},
                    claims_params={"nonce": nonce, "client_id": spa["client_id"], "access_token": token["access_token"]})
claims.validate()
assert claims["preferred_username"] == username and claims["email_verified"] is False, claims
info = app.get(oidc["userinfo_endpoint"], timeout=10).json()
assert info["sub"] == claims["sub"] and info["email"] == f"{username}@example.com", info
refreshed = app.refresh_token(oidc["token_endpoint"], refresh_token=token["refresh_token"])
assert refreshed["refresh_token"] != token["refresh_token"], refreshed
print(f"authlib: authorization code + PKCE as a public client -> ID token for {username} validated, userinfo, refresh")

# A user with an authenticator app (TOTP, set up through the JSON API) signs in through the code
# flow: the password, then the second-factor page with a code computed here (RFC 6238), and
# authlib receives an ID token whose `amr` says `otp` and `mfa` and whose `acr` is the
# multi-factor one the request asked for in `acr_values`.
import base64
import hashlib
import hmac
import struct
import time

MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
assert MFA_ACR in oidc["acr_values_supported"] and {"amr", "acr"} <= set(oidc["claims_supported"]), oidc


def totp(secret, at=None):
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def next_step():
    time.sleep(30 - time.time() % 30 + 1)


mfa_user = f"grace_{secrets.token_hex(4)}"
resp = requests.post(f"{issuer}/api/v1/users/signup", timeout=10,
                     json={"username": mfa_user, "email": f"{mfa_user}@example.com", "password": password})
assert resp.status_code == 201, resp.text
login = requests.post(f"{issuer}/api/v1/auth/login-json", json={"username": mfa_user, "password": password}, timeout=10)
bearer = {"authorization": f"Bearer {login.json()['access_token']}"}
enrolment = requests.post(f"{issuer}/api/v1/mfa/totp", headers=bearer, timeout=10)
assert enrolment.status_code in (200, 201), enrolment.text
totp_secret = enrolment.json()["secret"]
confirmed = requests.post(f"{issuer}/api/v1/mfa/totp/confirm", headers=bearer, json={"code": totp(totp_secret)},
                          timeout=10)
assert confirmed.status_code == 200, confirmed.text

app = OAuth2Session(spa["client_id"], scope="openid profile", redirect_uri=redirect_uri,
                    token_endpoint_auth_method="none", code_challenge_method="S256")
verifier = generate_token(64)
nonce = generate_token(20)
url, state = app.create_authorization_url(oidc["authorization_endpoint"], code_verifier=verifier, nonce=nonce,
                                          acr_values=MFA_ACR)
browser = requests.Session()
sign_in_page = browser.get(url, timeout=10)
assert sign_in_page.status_code == 200, sign_in_page.text
form = Form(sign_in_page.text).fields | {"username": mfa_user, "password": password}
second = browser.post(oidc["authorization_endpoint"], data=form, allow_redirects=False, timeout=10)
assert second.status_code == 200 and "Two-step verification" in second.text, second.text
assert not any(c.name.endswith("session") for c in browser.cookies), "no session before the second factor"
next_step()  # the confirmation used this step's code; a code is accepted once per step
form = Form(second.text).fields | {"code": totp(totp_secret), "method": "totp"}
page = browser.post(f"{issuer}/oauth2/authorize/mfa", data=form, allow_redirects=False, timeout=10)
if page.status_code == 200 and "Allow access?" in page.text:
    page = browser.post(f"{issuer}/oauth2/consent", data=Form(page.text).fields | {"decision": "allow"},
                        allow_redirects=False, timeout=10)
assert page.status_code == 303 and page.headers["location"].startswith(redirect_uri), (page.status_code, page.text)
token = app.fetch_token(oidc["token_endpoint"], authorization_response=page.headers["location"], state=state,
                        code_verifier=verifier)
claims = jwt.decode(token["id_token"], keys, claims_cls=CodeIDToken,
                    claims_options={"iss": {"essential": True, "value": oidc["issuer"]}},
                    claims_params={"nonce": nonce, "client_id": spa["client_id"], "access_token": token["access_token"]})
claims.validate()
assert {"pwd", "otp", "mfa"} <= set(claims["amr"]) and claims["acr"] == MFA_ACR, claims
print(f"authlib: {mfa_user} signed in with a password and a TOTP code -> amr {claims['amr']}, acr {claims['acr']}")
