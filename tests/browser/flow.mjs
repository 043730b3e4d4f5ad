// The browser flow in a real browser: headless Chromium (driven by playwright-core) signs a
// user in to a small web application through the service's hosted pages, and the application
// is a relying party built on openid-client (v6), which nobody here wrote: discovery, the
// authorization code with PKCE, the ID token checked against the JWKS (signature, iss, aud,
// nonce, exp), the RFC 9207 `iss` of the response, userinfo, a refresh, prompt=none, and
// RP-initiated logout. A screenshot of every page goes to SCREENSHOT_DIR.
//
// Then a new person: the sign-up page, the verification link from the mail the service sent
// (read from the SMTP sink the script started), a forgotten password reset through the
// mailed link, and a sign-in with the new password whose ID token says the address is verified.
//
// Then second factors: the new person sets up an authenticator app on the security page (the
// key read from the page, codes computed here, RFC 6238) and a passkey with Chromium's virtual
// authenticator (WebAuthn over CDP), and signs in with each as the second factor and with the
// passkey alone; a user without a factor whose app asks for one (`acr_values`) is asked to set
// one up. WebAuthn needs a secure context and a domain: the issuer is http://localhost:<port>.
//
// Usage: node flow.mjs ISSUER CLIENT_ID CLIENT_SECRET APP_PORT USERNAME PASSWORD SCREENSHOT_DIR CHROMIUM MAIL_INBOX
import crypto from "node:crypto";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import * as oidc from "openid-client";
import { chromium } from "playwright-core";

const [issuer, clientId, clientSecret, appPort, username, password, shots, chromiumPath, inbox] = process.argv.slice(2);
const app = `http://127.0.0.1:${appPort}`;
const MFA_ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";

// RFC 6238 (SHA-1, 6 digits, 30 s) from a base32 key, as an authenticator app computes it.
function totp(secret, at = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const mac = crypto.createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}
// A code is accepted once per 30-second step: wait for the next one.
const nextStep = () => new Promise((r) => setTimeout(r, (30 - ((Date.now() / 1000) % 30) + 1) * 1000));
const redirectUri = `${app}/callback`;
fs.mkdirSync(shots, { recursive: true });

// The test instance is plain HTTP on loopback; a real issuer is HTTPS.
const config = await oidc.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [oidc.allowInsecureRequests],
});
// Verify ID token signatures against the discovered JWKS too.
oidc.enableNonRepudiationChecks(config);

// ---- The relying party: one in-memory session, as a small web app would keep in a cookie.
const state = { pending: null, tokens: null, claims: null, userinfo: null, refreshed: null, error: null };
const page = (title, body) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>` +
  `<style>body{font:16px system-ui,sans-serif;margin:3rem;max-width:40rem}a.button{display:inline-block;` +
  `padding:.6rem 1rem;background:#0f766e;color:#fff;border-radius:.4rem;text-decoration:none;margin-right:.5rem}` +
  `pre{background:#f3f4f6;padding:1rem;overflow:auto}</style></head><body><h1>${title}</h1>${body}</body></html>`;
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function startAuthorization(res, extra) {
  const verifier = oidc.randomPKCECodeVerifier();
  const pending = { verifier, state: oidc.randomState(), nonce: oidc.randomNonce() };
  state.pending = pending;
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: "openid profile email roles offline_access",
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state: pending.state,
    nonce: pending.nonce,
    ...extra,
  });
  res.writeHead(302, { location: url.href }).end();
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, app);
  try {
    if (url.pathname === "/") {
      res.end(page("Example App", `<p>You are not signed in.</p><a class="button" id="login" href="/login">Sign in with auth-service</a>`));
    } else if (url.pathname === "/login") {
      await startAuthorization(res, {});
    } else if (url.pathname === "/login-mfa") {
      await startAuthorization(res, { acr_values: MFA_ACR });
    } else if (url.pathname === "/silent") {
      await startAuthorization(res, { prompt: "none" });
    } else if (url.pathname === "/callback") {
      const pending = state.pending;
      state.pending = null;
      try {
        const tokens = await oidc.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: pending.verifier,
          expectedState: pending.state,
          expectedNonce: pending.nonce,
          idTokenExpected: true,
        });
        const claims = tokens.claims();
        state.tokens = tokens;
        state.claims = claims;
        state.userinfo = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
        state.refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
        state.error = null;
        res.end(
          page(
            `Signed in as ${escape(state.userinfo.preferred_username)}`,
            `<p id="who">${escape(state.userinfo.email)} · roles: ${escape(state.userinfo.roles.join(", "))}</p>` +
              `<pre>${escape(JSON.stringify(claims, null, 2))}</pre>` +
              `<a class="button" id="silent" href="/silent">Sign in again silently</a>` +
              `<a class="button" id="logout" href="/logout">Sign out</a>`,
          ),
        );
      } catch (e) {
        state.error = e.error || `${e.code || ""} ${e.message || e}`;
        res.statusCode = 401;
        res.end(page("Not signed in", `<p id="error">${escape(state.error)}</p><a class="button" href="/login">Sign in</a>`));
      }
    } else if (url.pathname === "/logout") {
      const end = oidc.buildEndSessionUrl(config, {
        id_token_hint: state.tokens.id_token,
        post_logout_redirect_uri: `${app}/signed-out`,
        state: "bye",
      });
      res.writeHead(302, { location: end.href }).end();
    } else if (url.pathname === "/signed-out") {
      res.end(page("Signed out", `<p id="state">state=${escape(url.searchParams.get("state"))}</p><a class="button" id="silent" href="/silent">Try a silent sign-in</a>`));
    } else {
      res.statusCode = 404;
      res.end("not found");
    }
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e.stack || e));
  }
});
await new Promise((resolve) => server.listen(Number(appPort), "127.0.0.1", resolve));

// ---- The browser.
const checks = [];
function check(what, ok, detail = "") {
  checks.push({ what, ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${what}${detail && !ok ? `: ${detail}` : ""}`);
}
let shot = 0;
async function screenshot(p, name) {
  shot += 1;
  const file = path.join(shots, `${String(shot).padStart(2, "0")}-${name}.png`);
  await p.screenshot({ path: file, fullPage: true });
}

const browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
try {
  const context = await browser.newContext({ viewport: { width: 900, height: 720 } });
  const p = await context.newPage();
  const hostedPages = [];
  const cspViolations = [];
  p.on("response", (r) => {
    const u = new URL(r.url());
    if (u.origin === new URL(issuer).origin && u.pathname.startsWith("/oauth2/")) hostedPages.push(`${r.status()} ${u.pathname}`);
  });
  p.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });

  // The app's login button, then the hosted sign-in page.
  await p.goto(`${app}/`);
  await screenshot(p, "app");
  await p.click("#login");
  await p.waitForSelector("form[action='/oauth2/authorize'] input[name=password]");
  check("the login button leads to the hosted sign-in page", p.url().startsWith(`${issuer}/oauth2/authorize`), p.url());
  check("the sign-in page names the application", (await p.textContent("main")).includes("Example App"));
  await screenshot(p, "sign-in");

  // Keyboard: the username has focus, Tab goes to the password, then to the button.
  const focused = async () => p.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.tagName));
  check("the username field has focus", (await focused()) === "username", await focused());
  await p.keyboard.press("Tab");
  check("Tab moves to the password", (await focused()) === "password", await focused());
  await p.keyboard.press("Tab");
  check("Tab moves to the sign-in button", (await focused()) === "BUTTON", await focused());

  // A wrong password: the error is on the page, tied to the field.
  await p.fill("#username", username);
  await p.fill("#password", "not the password");
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  await p.waitForSelector("#signin-error");
  check("a wrong password shows its error", (await p.textContent("#signin-error")).includes("Wrong username or password"));
  check("the error is tied to the password field", (await p.getAttribute("#password", "aria-describedby")) === "signin-error");
  check("the password field is marked invalid", (await p.getAttribute("#password", "aria-invalid")) === "true");
  check("the username stays filled in", (await p.inputValue("#username")) === username);
  await screenshot(p, "wrong-password");

  // The right password: the consent page.
  await p.fill("#password", password);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  await p.waitForSelector("form[action='/oauth2/consent']");
  check("consent is asked of a third-party app", (await p.textContent("h1")).includes("Allow access"));
  await screenshot(p, "consent");

  // Allow: back at the app, which redeemed the code with openid-client.
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("button[value=allow]")]);
  await p.waitForSelector("#who, #error");
  check("back at the app, signed in", (await p.textContent("h1")) === `Signed in as ${username}`, await p.textContent("body"));
  check("openid-client validated the ID token (nonce, iss, aud, signature)", state.claims && state.claims.nonce !== undefined && state.claims.aud === clientId);
  check("the ID token names the user", state.claims.preferred_username === username && state.claims.email_verified === false);
  check("userinfo answered for the same subject", state.userinfo.sub === state.claims.sub);
  check("the refresh token rotated", typeof state.refreshed.refresh_token === "string" && state.refreshed.refresh_token !== state.tokens.refresh_token);
  await screenshot(p, "signed-in");

  // prompt=none with a live browser session: a code without a page.
  const before = hostedPages.length;
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("#silent")]);
  await p.waitForSelector("#who, #error");
  const silent = hostedPages.slice(before);
  check("prompt=none returned a code without a page", silent.length === 1 && silent[0] === "302 /oauth2/authorize", silent.join(", "));
  await screenshot(p, "silent-sign-in");

  // Sign-out: the confirmation page, then back to the app.
  await p.click("#logout");
  await p.waitForSelector("form[action='/oauth2/logout']");
  check("sign-out asks to confirm", (await p.textContent("h1")).includes("Sign out"));
  await screenshot(p, "sign-out");
  await Promise.all([p.waitForURL(`${app}/signed-out**`), p.click("button[type=submit]")]);
  check("back at the app's signed-out page with its state", (await p.textContent("#state")) === "state=bye");
  await screenshot(p, "signed-out");

  // The session ended: prompt=none now comes back with login_required.
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("#silent")]);
  await p.waitForSelector("#error");
  check("after sign-out, prompt=none is login_required", (await p.textContent("#error")) === "login_required", await p.textContent("#error"));
  await screenshot(p, "after-sign-out");

  // An error page: a redirect URI the app has not registered is shown, never followed.
  const evil = new URL(`${issuer}/oauth2/authorize`);
  for (const [k, v] of Object.entries({ response_type: "code", client_id: clientId, redirect_uri: "https://evil.example/", code_challenge: "a".repeat(43), code_challenge_method: "S256" })) {
    evil.searchParams.set(k, v);
  }
  const resp = await p.goto(evil.href);
  check("an unregistered redirect URI is an error page", resp.status() === 400 && new URL(p.url()).origin === new URL(issuer).origin);
  await screenshot(p, "error-page");

  // ---- A new person signs up on the hosted pages, confirms the address from the mail, forgets
  // the password and resets it through the mailed link.
  const newName = `grace${Date.now()}`;
  const newEmail = `${newName}@example.com`;
  const firstPassword = "tangerine kettle orbit 7";
  const newPassword = "saffron glacier violin 9";
  const mailTo = async (address, subject) => {
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${inbox}/messages?to=${encodeURIComponent(address)}`);
      const found = (await res.json()).filter((m) => m.subject.includes(subject));
      if (found.length) return found[found.length - 1];
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no mail "${subject}" for ${address}`);
  };
  const linkIn = (mail, part) => mail.text.split(/\s+/).find((w) => w.startsWith("http") && w.includes(part));

  await p.goto(`${app}/`);
  await Promise.all([p.waitForURL(`${issuer}/oauth2/authorize**`), p.click("#login")]);
  await Promise.all([p.waitForURL(`${issuer}/account/sign-up`), p.click("a[href='/account/sign-up']")]);
  check("the sign-in page links to the sign-up page", (await p.textContent("h1")).includes("Create an account"));
  await p.fill("#username", newName);
  await p.fill("#email", newEmail);
  await p.fill("#password", "Password1");
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  await p.waitForSelector("#signup-error");
  check("a common password is refused on the form", (await p.textContent("#signup-error")).includes("too common"));
  check("what was typed stays, but not the password", (await p.inputValue("#email")) === newEmail && (await p.inputValue("#password")) === "");
  await screenshot(p, "sign-up-refused-password");
  await p.fill("#password", firstPassword);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  check("signing up asks to check the mail", (await p.textContent("h1")).includes("Check your mail"), await p.textContent("main"));
  await screenshot(p, "signed-up");

  const verifyMail = await mailTo(newEmail, "Verify");
  const verifyLink = linkIn(verifyMail, "/account/verify-email");
  check("the verification mail carries a link to the service", verifyLink && verifyLink.startsWith(`${issuer}/account/verify-email?token=`), verifyMail.text);
  check("the verification mail has an HTML body with the same link", verifyMail.html.includes(verifyLink.replace(/&/g, "&amp;")));
  await p.goto(verifyLink);
  check("the link opens a page with a confirm button, not a verified address", (await p.textContent("h1")).includes("Verify your email address"));
  await screenshot(p, "verify-email");
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  check("the button verifies the address", (await p.textContent("h1")).includes("Address verified"), await p.textContent("main"));
  await screenshot(p, "email-verified");

  await p.goto(`${app}/`);
  await Promise.all([p.waitForURL(`${issuer}/oauth2/authorize**`), p.click("#login")]);
  await Promise.all([p.waitForURL(`${issuer}/account/forgot-password`), p.click("a[href='/account/forgot-password']")]);
  await p.fill("#email", newEmail);
  await screenshot(p, "forgot-password");
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  check("asking for a reset link asks to check the mail", (await p.textContent("h1")).includes("Check your mail"));
  const resetMail = await mailTo(newEmail, "Reset your password");
  const resetLink = linkIn(resetMail, "/account/reset-password");
  await p.goto(resetLink);
  check("the reset link opens the new-password form", (await p.textContent("h1")).includes("Choose a new password"));
  await screenshot(p, "reset-password");
  await p.fill("#new_password", newPassword);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  check("the password was changed", (await p.textContent("h1")).includes("Password changed"), await p.textContent("main"));
  await screenshot(p, "password-changed");
  await mailTo(newEmail, "Your password was changed");
  check("a notice of the change was mailed", true);
  await p.goto(resetLink);
  check("the link works once", (await p.textContent("main")).includes("invalid or has expired"), await p.textContent("main"));

  // The new password signs in to the app; the ID token says the address is verified.
  await p.goto(`${app}/`);
  await Promise.all([p.waitForURL(`${issuer}/oauth2/authorize**`), p.click("#login")]);
  await p.fill("#username", newName);
  await p.fill("#password", firstPassword);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  await p.waitForSelector("#signin-error");
  check("the old password no longer signs in", (await p.textContent("#signin-error")).includes("Wrong username or password"));
  await p.fill("#password", newPassword);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  await p.waitForSelector("form[action='/oauth2/consent']");
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("button[value=allow]")]);
  await p.waitForSelector("#who, #error");
  check("the new password signs in", (await p.textContent("h1")) === `Signed in as ${newName}`, await p.textContent("body"));
  check("the ID token says the address is verified", state.claims.email === newEmail && state.claims.email_verified === true, JSON.stringify(state.claims));
  await screenshot(p, "signed-in-after-reset");

  // ---- Second factors. A virtual authenticator stands in for the device's platform passkey.
  const cdp = await context.newCDPSession(p);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });

  // Without a browser session the security page signs the browser in itself.
  const fresh = await browser.newContext({ viewport: { width: 900, height: 720 } });
  const q = await fresh.newPage();
  await q.goto(`${issuer}/account/security`);
  check("the security page without a session is a sign-in form", (await q.locator("form[action='/account/security/sign-in'] input[name=password]").count()) === 1);
  await screenshot(q, "security-sign-in");
  await fresh.close();

  // The security page (the browser session of the sign-in above): set up an authenticator app.
  await p.goto(`${issuer}/account/security`);
  check("the security page lists no factor yet", (await p.textContent("main")).includes("No passkeys yet"), await p.textContent("main"));
  await screenshot(p, "security-page");
  await Promise.all([p.waitForLoadState("load"), p.click("form[action='/account/security/totp'] button")]);
  await p.waitForSelector("#totp-secret");
  const secret = (await p.textContent("#totp-secret")).trim();
  check("the setup page shows the QR code inline and the key", (await p.locator(".qr svg").count()) === 1 && /^[A-Z2-7]+=*$/.test(secret), secret);
  await screenshot(p, "totp-setup");
  await p.fill("#code", totp(secret));
  await Promise.all([p.waitForLoadState("load"), p.click("form[action='/account/security/totp/confirm'] button")]);
  await p.waitForSelector("#recovery-codes");
  check("ten recovery codes are shown once", (await p.locator("#recovery-codes li").count()) === 10);
  await screenshot(p, "recovery-codes");

  // A passkey, registered through the page script and the virtual authenticator.
  await p.goto(`${issuer}/account/security`);
  await p.fill("#passkey-name", "Virtual key");
  await Promise.all([p.waitForURL(`${issuer}/account/security/passkeys`), p.click("button[data-webauthn=create]")]);
  check("the passkey is added", (await p.textContent("main")).includes("The passkey is added"), await p.textContent("main"));
  check("the passkey is listed", (await p.textContent("table.factors")).includes("Virtual key"));
  await screenshot(p, "passkey-added");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  check("the authenticator holds one discoverable credential", credentials.length === 1 && credentials[0].isResidentCredential, JSON.stringify(credentials));

  const signOut = async () => {
    await p.goto(`${app}/`);
    await p.goto(`${app}/logout`);
    await p.waitForSelector("form[action='/oauth2/logout']");
    await Promise.all([p.waitForURL(`${app}/signed-out**`), p.click("button[type=submit]")]);
  };
  const passwordStep = async () => {
    await p.goto(`${app}/`);
    await Promise.all([p.waitForURL(`${issuer}/oauth2/authorize**`), p.click("#login")]);
    await p.fill("#username", newName);
    await p.fill("#password", newPassword);
    await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
    await p.waitForSelector("form[action='/oauth2/authorize/mfa']");
  };
  const backAtApp = async () => {
    await p.waitForSelector("#who, #error");
    return state.claims || {};
  };

  // Password, then a TOTP code (a wrong one first).
  await signOut();
  await passwordStep();
  check("the password leads to the second-factor page", (await p.textContent("h1")).includes("Two-step verification"));
  await screenshot(p, "second-factor");
  await p.fill("#code", "000000");
  await Promise.all([p.waitForLoadState("load"), p.click("button[value=totp]")]);
  await p.waitForSelector("#mfa-error");
  check("a wrong code shows its error", (await p.textContent("#mfa-error")).includes("not right"));
  await screenshot(p, "second-factor-wrong-code");
  await nextStep();
  await p.fill("#code", totp(secret));
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("button[value=totp]")]);
  let claims = await backAtApp();
  check("TOTP: the ID token says otp and mfa", ["pwd", "otp", "mfa"].every((m) => (claims.amr || []).includes(m)), JSON.stringify(claims));
  check("TOTP: the ID token's acr is the multi-factor one", claims.acr === MFA_ACR, JSON.stringify(claims));
  await screenshot(p, "signed-in-with-totp");

  // Password, then the passkey as the second factor.
  await signOut();
  await passwordStep();
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("button[data-webauthn=get]")]);
  claims = await backAtApp();
  check("passkey as second factor: amr has mfa and a key", (claims.amr || []).includes("mfa") && (claims.amr || []).some((m) => m === "hwk" || m === "swk"), JSON.stringify(claims));
  await screenshot(p, "signed-in-with-passkey-as-second-factor");

  // The passkey alone (passwordless).
  await signOut();
  await p.goto(`${app}/`);
  await Promise.all([p.waitForURL(`${issuer}/oauth2/authorize**`), p.click("#login")]);
  await p.waitForSelector("button[data-webauthn=get]:not([hidden])");
  await screenshot(p, "sign-in-with-passkey-offered");
  await Promise.all([p.waitForURL(`${app}/callback**`), p.click("button[data-webauthn=get]")]);
  claims = await backAtApp();
  check("passwordless: signed in as the passkey's owner", claims.preferred_username === newName, JSON.stringify(claims));
  await screenshot(p, "signed-in-passwordless");

  // A user without a factor, for an app that asks for one: asked to set one up first.
  await signOut();
  await p.goto(`${app}/login-mfa`);
  await p.fill("#username", username);
  await p.fill("#password", password);
  await Promise.all([p.waitForLoadState("load"), p.click("button[type=submit]")]);
  check("acr_values: a user without a factor is asked to set one up", (await p.textContent("h1")).includes("Set up two-step verification"), await p.textContent("main"));
  await screenshot(p, "enrol-first");

  check("no page broke its Content-Security-Policy", cspViolations.length === 0, cspViolations.join(" | "));
  const assets = hostedPages.filter((h) => h.includes("/oauth2/assets/"));
  check(
    "the pages' stylesheet and passkey script loaded under their hashed names",
    assets.length > 0 && assets.every((h) => /^200 \/oauth2\/assets\/(style-[0-9a-f]{16}\.css|webauthn-[0-9a-f]{16}\.js)$/.test(h)),
    assets.join(", "),
  );
} finally {
  await browser.close();
  server.close();
}

const failed = checks.filter((c) => !c.ok);
console.log(`browser flow: ${checks.length - failed.length}/${checks.length} checks passed; ${shot} screenshots in ${shots}`);
process.exit(failed.length ? 1 : 0);
