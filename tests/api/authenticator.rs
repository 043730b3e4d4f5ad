//! A software WebAuthn authenticator and the browser around it, for the passkey tests: ES256
//! keys (aws-lc-rs), `fmt: "none"` attestation, resident credentials that remember their user
//! handle, and the credential JSON a browser hands the page (base64url fields). The counter and
//! the flags are the test's to set, and every part a server must check can be tampered with.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// A minimal CBOR (RFC 8949) writer: the items an attestation object and a COSE key need.
pub mod cbor {
    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend(n.to_be_bytes());
            }
        }
    }

    pub fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 { head(out, 0, v as u64) } else { head(out, 1, (-1 - v) as u64) }
    }

    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        head(out, 2, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn text(out: &mut Vec<u8>, s: &str) {
        head(out, 3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    pub fn map(out: &mut Vec<u8>, entries: usize) {
        head(out, 5, entries as u64);
    }
}

pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).expect("base64url")
}

/// What a test changes in one ceremony's answer.
#[derive(Debug, Clone, Default)]
pub struct Tamper {
    /// The origin the client data names (a phishing page's).
    pub origin: Option<String>,
    /// The RP ID whose hash the authenticator data carries.
    pub rp_id: Option<String>,
    /// The challenge the client data names.
    pub challenge: Option<String>,
    /// Flip a bit of the signature.
    pub signature: bool,
    /// Leave out the user-verified flag.
    pub no_user_verification: bool,
}

struct Credential {
    id: Vec<u8>,
    key: EcdsaKeyPair,
    rp_id: String,
    user_handle: Vec<u8>,
}

/// One authenticator (a platform authenticator or a security key) with its resident credentials.
pub struct Authenticator {
    /// The page's origin, as the browser reports it.
    pub origin: String,
    /// The signature counter the next assertion reports is `counter + 1` (set it to go back;
    /// `None` for an authenticator without a counter, which always reports 0).
    pub counter: Option<u32>,
    /// Backup eligible (a synced passkey) and backed up.
    pub backup_eligible: bool,
    pub backup_state: bool,
    credentials: Vec<Credential>,
    rng: SystemRandom,
}

impl Authenticator {
    /// A device-bound authenticator with a counter, for pages of `origin`.
    pub fn new(origin: &str) -> Authenticator {
        Authenticator {
            origin: origin.to_string(),
            counter: Some(0),
            backup_eligible: false,
            backup_state: false,
            credentials: Vec::new(),
            rng: SystemRandom::new(),
        }
    }

    /// A synced passkey provider: backup eligible and backed up, no counter.
    pub fn synced(origin: &str) -> Authenticator {
        Authenticator { counter: None, backup_eligible: true, backup_state: true, ..Authenticator::new(origin) }
    }

    fn flags(&self, attested: bool, tamper: &Tamper) -> u8 {
        let mut f = 0x01; // user present
        if !tamper.no_user_verification {
            f |= 0x04;
        }
        if self.backup_eligible {
            f |= 0x08;
        }
        if self.backup_state {
            f |= 0x10;
        }
        if attested {
            f |= 0x40;
        }
        f
    }

    fn client_data(&self, kind: &str, challenge: &str, tamper: &Tamper) -> Vec<u8> {
        let cd = json!({
            "type": kind,
            "challenge": tamper.challenge.as_deref().unwrap_or(challenge),
            "origin": tamper.origin.as_deref().unwrap_or(&self.origin),
            "crossOrigin": false,
        });
        serde_json::to_vec(&cd).expect("json")
    }

    /// `navigator.credentials.create(options)`: a new resident credential; the credential JSON.
    pub fn create(&mut self, options: &Value) -> Value {
        self.create_tampered(options, &Tamper::default())
    }

    pub fn create_tampered(&mut self, options: &Value, tamper: &Tamper) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge");
        let rp_id = pk["rp"]["id"].as_str().expect("rp.id").to_string();
        let user_handle = unb64(pk["user"]["id"].as_str().expect("user.id"));
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
        let mut id = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut id).expect("rng");

        let point = key.public_key().as_ref().to_vec(); // 0x04 || x || y
        let mut cose = Vec::new();
        cbor::map(&mut cose, 5);
        cbor::int(&mut cose, 1);
        cbor::int(&mut cose, 2); // kty: EC2
        cbor::int(&mut cose, 3);
        cbor::int(&mut cose, -7); // alg: ES256
        cbor::int(&mut cose, -1);
        cbor::int(&mut cose, 1); // crv: P-256
        cbor::int(&mut cose, -2);
        cbor::bytes(&mut cose, &point[1..33]);
        cbor::int(&mut cose, -3);
        cbor::bytes(&mut cose, &point[33..65]);

        let hashed_rp = tamper.rp_id.as_deref().unwrap_or(&rp_id);
        let mut auth_data = digest(&SHA256, hashed_rp.as_bytes()).as_ref().to_vec();
        auth_data.push(self.flags(true, tamper));
        auth_data.extend(self.counter.unwrap_or(0).to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID
        auth_data.extend((id.len() as u16).to_be_bytes());
        auth_data.extend(&id);
        auth_data.extend(&cose);

        let mut att = Vec::new();
        cbor::map(&mut att, 3);
        cbor::text(&mut att, "fmt");
        cbor::text(&mut att, "none");
        cbor::text(&mut att, "attStmt");
        cbor::map(&mut att, 0);
        cbor::text(&mut att, "authData");
        cbor::bytes(&mut att, &auth_data);

        let client_data = self.client_data("webauthn.create", challenge, tamper);
        self.credentials.push(Credential { id: id.clone(), key, rp_id, user_handle });
        json!({
            "id": b64(&id),
            "rawId": b64(&id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&att),
                "clientDataJSON": b64(&client_data),
                "transports": ["internal"],
            },
            "extensions": {},
        })
    }

    /// `navigator.credentials.get(options)`: an assertion by the first credential the options
    /// allow (any of the RP's, for a discoverable request).
    pub fn get(&mut self, options: &Value) -> Value {
        self.get_tampered(options, &Tamper::default())
    }

    pub fn get_tampered(&mut self, options: &Value, tamper: &Tamper) -> Value {
        let pk = &options["publicKey"];
        let challenge = pk["challenge"].as_str().expect("challenge");
        let rp_id = pk["rpId"].as_str().expect("rpId").to_string();
        let allowed: Vec<Vec<u8>> = pk["allowCredentials"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_str()).map(unb64).collect())
            .unwrap_or_default();
        let counter = self.counter.map(|c| c + 1);
        if let Some(c) = counter {
            self.counter = Some(c);
        }
        let flags = self.flags(false, tamper);
        let cred = self
            .credentials
            .iter()
            .find(|c| c.rp_id == rp_id && (allowed.is_empty() || allowed.contains(&c.id)))
            .expect("a credential for this request");
        let hashed_rp = tamper.rp_id.as_deref().unwrap_or(&rp_id);
        let mut auth_data = digest(&SHA256, hashed_rp.as_bytes()).as_ref().to_vec();
        auth_data.push(flags);
        auth_data.extend(counter.unwrap_or(0).to_be_bytes());
        let client_data = self.client_data("webauthn.get", challenge, tamper);
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let mut signature = cred.key.sign(&self.rng, &signed).expect("sign").as_ref().to_vec();
        if tamper.signature {
            let last = signature.len() - 1;
            signature[last] ^= 0x01;
        }
        json!({
            "id": b64(&cred.id),
            "rawId": b64(&cred.id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(&signature),
                "userHandle": b64(&cred.user_handle),
            },
            "extensions": {},
        })
    }
}
