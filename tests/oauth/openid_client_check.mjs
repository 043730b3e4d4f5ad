// OAuth 2.1 client credentials with openid-client (v6), a client library nobody here wrote:
// discovery, then the client_credentials grant (client_secret_post, openid-client's default).
// Usage: node openid_client_check.mjs ISSUER CLIENT_ID CLIENT_SECRET SCOPE
import * as client from "openid-client";

const [issuer, clientId, clientSecret, scope] = process.argv.slice(2);
// The test instance listens on plain HTTP on loopback; a real issuer is HTTPS.
const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
});
const meta = config.serverMetadata();
if (!meta.token_endpoint.endsWith("/oauth2/token")) throw new Error(`token_endpoint ${meta.token_endpoint}`);
const tokens = await client.clientCredentialsGrant(config, { scope });
if (tokens.token_type.toLowerCase() !== "bearer" || tokens.scope !== scope) throw new Error(JSON.stringify(tokens));
const claims = JSON.parse(Buffer.from(tokens.access_token.split(".")[1], "base64url").toString());
if (claims.client_id !== clientId || claims.sub !== clientId) throw new Error(JSON.stringify(claims));
console.log(`openid-client: discovery + client_credentials -> token for ${clientId} scope ${tokens.scope}`);
