//! Target `webauthn`: the parsers of the passkey finish routes
//! (`auth_service::flows::webauthn::parse_registration` and `parse_assertion`, which the
//! register and sign-in finishes call on the request's `credential`), and webauthn-rs's checks
//! behind them on what they let through.
//!
//! The first byte picks the mode:
//! - `J`: the rest is a request body as the finish routes read it (`{"ceremony_id",
//!   "credential", …}`), or a credential alone; both parsers get the `credential` field and the
//!   whole document.
//! - anything else: the rest is split at `0xFF` bytes into the binary fields of a credential
//!   (client data, authenticator data or attestation object, signature, user handle, id), which
//!   are base64url-encoded into both credential shapes, parsed, and then finished against a
//!   registration and a passwordless ceremony started once (so webauthn-rs's CBOR, client data
//!   and COSE parsing see the bytes).
//!
//! Oracles: a parse error is 400 `invalid_credential` and nothing else; a parsed credential
//! survives a serialise/parse round trip with the same `rawId`; webauthn-rs refuses (an
//! arbitrary input never registers or signs in); no panic.

use std::sync::LazyLock;

use auth_service::flows::error::{FlowError, PasskeyError};
use auth_service::flows::webauthn::{parse_assertion, parse_registration, relying_party};
use auth_service::http::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

type Rp = std::sync::Arc<webauthn_rs::prelude::Webauthn>;

struct Ceremonies {
    rp: Rp,
    registration: webauthn_rs::prelude::PasskeyRegistration,
    discoverable: webauthn_rs::prelude::DiscoverableAuthentication,
}

static CEREMONIES: LazyLock<Ceremonies> = LazyLock::new(|| {
    let rp = relying_party("https://auth.test", "auth-service").expect("relying party");
    let (_, registration) =
        rp.start_passkey_registration(uuid::Uuid::nil(), "fuzz", "fuzz", None).expect("registration");
    let (_, discoverable) = rp.start_discoverable_authentication().expect("discoverable");
    Ceremonies { rp, registration, discoverable }
});

fn refused_as_malformed(e: FlowError) {
    assert!(matches!(e, FlowError::Passkey(PasskeyError::Malformed)), "unexpected error {e:?}");
    let api = ApiError::from(e);
    assert_eq!((api.status().as_u16(), api.code()), (400, "invalid_credential"));
}

/// Both parsers on `v`; the parsed credentials, if any.
fn parse_both(
    v: &Value,
) -> (Option<webauthn_rs::prelude::RegisterPublicKeyCredential>, Option<webauthn_rs::prelude::PublicKeyCredential>) {
    let reg = match parse_registration(v) {
        Ok(c) => {
            let again = serde_json::to_value(&c).expect("serialise");
            let back = parse_registration(&again).expect("round trip");
            assert_eq!(back.raw_id, c.raw_id);
            Some(c)
        }
        Err(e) => {
            refused_as_malformed(e);
            None
        }
    };
    let auth = match parse_assertion(v) {
        Ok(c) => {
            let again = serde_json::to_value(&c).expect("serialise");
            let back = parse_assertion(&again).expect("round trip");
            assert_eq!(back.raw_id, c.raw_id);
            let _ = c.get_user_unique_id();
            Some(c)
        }
        Err(e) => {
            refused_as_malformed(e);
            None
        }
    };
    (reg, auth)
}

pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((b'J', rest)) => {
            let Ok(doc) = serde_json::from_slice::<Value>(rest) else { return };
            parse_both(&doc);
            if let Some(credential) = doc.get("credential") {
                parse_both(credential);
            }
        }
        Some((_, rest)) => binary(rest),
        None => {}
    }
}

fn binary(rest: &[u8]) {
    let mut parts = rest.split(|b| *b == 0xff).map(|p| URL_SAFE_NO_PAD.encode(p));
    let mut next = || parts.next().unwrap_or_default();
    let (client_data, auth_data, signature, user_handle, id) = (next(), next(), next(), next(), next());
    let registration = json!({
        "id": id, "rawId": id, "type": "public-key",
        "response": {"attestationObject": auth_data, "clientDataJSON": client_data},
    });
    let assertion = json!({
        "id": id, "rawId": id, "type": "public-key",
        "response": {
            "authenticatorData": auth_data, "clientDataJSON": client_data,
            "signature": signature, "userHandle": user_handle,
        },
    });
    let c = &*CEREMONIES;
    if let (Some(reg), _) = parse_both(&registration) {
        assert!(c.rp.finish_passkey_registration(&reg, &c.registration).is_err(), "an arbitrary credential registered");
    }
    if let (_, Some(auth)) = parse_both(&assertion) {
        let _ = c.rp.identify_discoverable_authentication(&auth);
        let outcome = c.rp.finish_discoverable_authentication(&auth, c.discoverable.clone(), &[]);
        assert!(outcome.is_err(), "an arbitrary assertion signed in");
    }
}
