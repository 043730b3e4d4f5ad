// Verifies auth-service access tokens with jose, knowing only the issuer's discovery URL.
// Usage: node verify.mjs DISCOVERY_URL AUDIENCE TOKEN [TOKEN...]
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from "jose";

const [discoveryUrl, audience, ...tokens] = process.argv.slice(2);
const meta = await (await fetch(discoveryUrl)).json();
const jwks = createRemoteJWKSet(new URL(meta.jwks_uri));
let failed = 0;
for (const token of tokens) {
  const header = decodeProtectedHeader(token);
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: meta.issuer,
      audience,
      algorithms: ["RS256", "ES256"],
      typ: "at+jwt",
      requiredClaims: ["exp", "iat", "nbf", "sub", "jti"],
    });
    console.log(`jose: ok ${header.alg} kid=${header.kid} sub=${payload.sub}`);
  } catch (err) {
    failed += 1;
    console.log(`jose: FAILED ${header.alg} kid=${header.kid}: ${err.message}`);
  }
}
process.exit(failed ? 1 : 0);
