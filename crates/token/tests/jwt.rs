//! JWTs against the RFC 8725 / OWASP JWT cheat-sheet attack list. Forged tokens are signed
//! with the real keys where that matters, so each test shows the check itself refuses them
//! (and a control token built the same way is accepted, so the forger is right).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{T0, block_on, clock, issue, load, policy};
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tessera_core::{Engine, ManualClock};
use tessera_token::{Algorithm, JwtEngine, JwtKey, KeyError, KeyRing};

const ED_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const HS_SECRET: [u8; 32] = [
    0x4f, 0xa2, 0x11, 0xe9, 0x07, 0xc3, 0x5b, 0x88, 0x2d, 0xf0, 0x96, 0x3a, 0xb1, 0x6e, 0x04, 0xd7,
    0x73, 0x1c, 0xe5, 0x9a, 0x28, 0xbf, 0x41, 0x06, 0x8d, 0xf9, 0x62, 0x35, 0xca, 0x17, 0x5e, 0xab,
];

struct Fixture {
    clock: ManualClock,
    engine: JwtEngine,
}

fn fixture() -> Fixture {
    let clock = clock();
    let ring = KeyRing::new(JwtKey::ed25519_from_seed("ed", &ED_SEED).unwrap())
        .with_key(JwtKey::hs256("hs", &HS_SECRET).unwrap())
        .unwrap();
    let engine = JwtEngine::new(ring)
        .unwrap()
        .with_issuer("https://issuer.test")
        .with_audience("shop")
        .with_leeway(Duration::from_secs(30))
        .with_policy(policy())
        .with_clock(clock.clone());
    Fixture { clock, engine }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn header(alg: &str, kid: &str) -> String {
    json!({"alg": alg, "typ": "session+jwt", "kid": kid}).to_string()
}

/// A complete, valid claim set at `T0`.
fn claims() -> Value {
    let now = T0 / 1000;
    json!({
        "iss": "https://issuer.test",
        "aud": "shop",
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": b64([7u8; 32]),
        "tsr": {
            "ver": 1,
            "created": T0,
            "auth": T0,
            "seen": T0,
            "idle": T0 + 600_000,
            "abs": T0 + 3_600_000,
            "csrf": b64([9u8; 32]),
            "data": {"role": "user"},
        }
    })
}

/// Signs the header and payload texts as given (no re-serialization).
fn sign_ed(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = SigningKey::from_bytes(&ED_SEED).sign(input.as_bytes());
    format!("{input}.{}", b64(signature.to_bytes()))
}

fn sign_hs_with(secret: &[u8], input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

fn sign_hs(header: &str, payload: &str) -> String {
    sign_hs_with(&HS_SECRET, &format!("{}.{}", b64(header), b64(payload)))
}

fn accepted(f: &Fixture, token: &str) -> bool {
    block_on(f.engine.load(token)).unwrap().is_some()
}

fn with(mut claims: Value, path: &[&str], value: Value) -> String {
    let mut target = &mut claims;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target[path[path.len() - 1]] = value;
    claims.to_string()
}

fn without(mut claims: Value, key: &str) -> String {
    claims.as_object_mut().unwrap().remove(key);
    claims.to_string()
}

#[test]
fn control_forged_tokens_with_good_claims_are_accepted() {
    let f = fixture();
    let payload = claims().to_string();
    assert!(accepted(&f, &sign_ed(&header("EdDSA", "ed"), &payload)));
    assert!(accepted(&f, &sign_hs(&header("HS256", "hs"), &payload)));
    let session = block_on(f.engine.load(&sign_ed(&header("EdDSA", "ed"), &payload)))
        .unwrap()
        .unwrap();
    assert_eq!(session.subject(), Some("alice"));
    assert_eq!(
        session.get::<String>("role").unwrap().as_deref(),
        Some("user")
    );
}

#[test]
fn alg_none_in_every_capitalisation_is_refused() {
    let f = fixture();
    let payload = claims().to_string();
    let genuine = sign_ed(&header("EdDSA", "ed"), &payload);
    let genuine_signature = genuine.rsplit('.').next().unwrap();
    let mut spellings = 0;
    for mask in 0..16u32 {
        let none: String = "none"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for kid in ["ed", "hs"] {
            let input = format!("{}.{}", b64(header(&none, kid)), b64(&payload));
            assert!(!accepted(&f, &format!("{input}.")), "{none}");
            assert!(
                !accepted(&f, &format!("{input}.{genuine_signature}")),
                "{none}"
            );
            assert!(!accepted(&f, &input), "{none}");
        }
        spellings += 1;
    }
    assert_eq!(spellings, 16);
}

#[test]
fn hs256_signed_with_the_ed25519_public_key_is_refused() {
    let f = fixture();
    let public = f.engine.keys().get("ed").unwrap().public_key().unwrap();
    let jwk_x = f.engine.jwks()["keys"][0]["x"].as_str().unwrap().to_owned();
    let payload = claims().to_string();
    for kid in ["ed", "hs"] {
        let input = format!("{}.{}", b64(header("HS256", kid)), b64(&payload));
        assert!(!accepted(&f, &sign_hs_with(&public, &input)), "{kid}");
        assert!(
            !accepted(&f, &sign_hs_with(jwk_x.as_bytes(), &input)),
            "{kid}"
        );
    }
    // The mirror image: the HS256 key's kid with alg EdDSA.
    assert!(!accepted(&f, &sign_ed(&header("EdDSA", "hs"), &payload)));
    // Other algorithms never verify.
    for alg in [
        "RS256", "ES256", "HS512", "PS256", "EdDSA ", "eddsa", "hs256",
    ] {
        assert!(
            !accepted(&f, &sign_ed(&header(alg, "ed"), &payload)),
            "{alg}"
        );
    }
}

#[test]
fn tampered_payload_and_signature_are_refused() {
    let f = fixture();
    let token = block_on(issue(&f.engine, Some("alice")));
    assert!(accepted(&f, &token));
    let segments: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        segments[0],
        b64(claims.to_string()),
        segments[2]
    );
    assert!(!accepted(&f, &forged));
    // Ed25519 verification is slow in unoptimized test builds: flip one bit in each of 64
    // positions spread over the whole token here; the HS256 test below flips every bit.
    let step = token.len().div_ceil(64);
    for i in (0..token.len()).step_by(step) {
        let mut bytes = token.clone().into_bytes();
        bytes[i] ^= 1 << (i % 7);
        let text = String::from_utf8(bytes).unwrap();
        assert!(!accepted(&f, &text), "byte {i}");
    }
}

#[test]
fn every_single_bit_flip_of_an_hs256_token_is_refused() {
    let f = fixture();
    let token = sign_hs(&header("HS256", "hs"), &claims().to_string());
    block_on(async {
        assert!(f.engine.load(&token).await.unwrap().is_some());
        for i in 0..token.len() {
            for bit in 0..8 {
                let mut bytes = token.clone().into_bytes();
                bytes[i] ^= 1 << bit;
                if let Ok(text) = String::from_utf8(bytes) {
                    let loaded = f.engine.load(&text).await.unwrap();
                    assert!(loaded.is_none(), "byte {i} bit {bit}");
                }
            }
        }
    });
}

#[test]
fn expired_and_missing_exp_are_refused() {
    let f = fixture();
    let now = T0 / 1000;
    let h = header("EdDSA", "ed");
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["exp"], json!(now)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["exp"], json!(now - 1)))
    ));
    assert!(accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["exp"], json!(now + 1)))
    ));
    assert!(!accepted(&f, &sign_ed(&h, &without(claims(), "exp"))));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["exp"], json!(now as f64 + 0.5)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["exp"], json!("never")))
    ));
    // exp in the future but the session's own deadline passed: dead all the same.
    let stale = with(claims(), &["tsr", "idle"], json!(T0));
    assert!(!accepted(&f, &sign_ed(&h, &stale)));
    // A real token, expired by the clock.
    let token = block_on(issue(&f.engine, None));
    f.clock.advance(Duration::from_secs(600));
    assert!(!accepted(&f, &token));
}

#[test]
fn not_yet_valid_and_future_iat_are_refused_beyond_the_leeway() {
    let f = fixture();
    let now = T0 / 1000;
    let h = header("EdDSA", "ed");
    assert!(accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["nbf"], json!(now + 30)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["nbf"], json!(now + 31)))
    ));
    assert!(accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["iat"], json!(now + 30)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["iat"], json!(now + 31)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["iat"], json!(now + 86_400)))
    ));
    assert!(!accepted(&f, &sign_ed(&h, &without(claims(), "iat"))));
}

#[test]
fn wrong_issuer_and_audience_are_refused() {
    let f = fixture();
    let h = header("EdDSA", "ed");
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["iss"], json!("https://evil.test")))
    ));
    assert!(!accepted(&f, &sign_ed(&h, &without(claims(), "iss"))));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["aud"], json!("admin")))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["aud"], json!(["admin", "api"])))
    ));
    assert!(!accepted(&f, &sign_ed(&h, &without(claims(), "aud"))));
    assert!(accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["aud"], json!(["admin", "shop"])))
    ));
    // An engine with no audience configured refuses tokens addressed to someone.
    let plain = JwtEngine::new(KeyRing::new(
        JwtKey::ed25519_from_seed("ed", &ED_SEED).unwrap(),
    ))
    .unwrap()
    .with_issuer("https://issuer.test")
    .with_clock(f.clock.clone());
    let token = sign_ed(&h, &claims().to_string());
    assert!(block_on(plain.load(&token)).unwrap().is_none());
    assert!(
        block_on(plain.load(&sign_ed(&h, &without(claims(), "aud"))))
            .unwrap()
            .is_some()
    );
}

#[test]
fn unknown_and_path_like_kids_are_refused() {
    let f = fixture();
    let payload = claims().to_string();
    for kid in [
        "ed2",
        "../ed",
        "ed/../ed",
        "../../etc/passwd",
        "",
        "ED",
        "https://evil.test/k",
    ] {
        assert!(
            !accepted(&f, &sign_ed(&header("EdDSA", kid), &payload)),
            "{kid}"
        );
    }
    let no_kid = json!({"alg": "EdDSA", "typ": "session+jwt"}).to_string();
    assert!(!accepted(&f, &sign_ed(&no_kid, &payload)));
    let numeric_kid = json!({"alg": "EdDSA", "typ": "session+jwt", "kid": 1}).to_string();
    assert!(!accepted(&f, &sign_ed(&numeric_kid, &payload)));
}

#[test]
fn wrong_or_missing_typ_is_refused() {
    let f = fixture();
    let payload = claims().to_string();
    for typ in [
        json!("JWT"),
        json!("at+jwt"),
        json!("Session+JWT"),
        json!(""),
        json!(null),
    ] {
        let h = json!({"alg": "EdDSA", "typ": typ, "kid": "ed"}).to_string();
        assert!(!accepted(&f, &sign_ed(&h, &payload)), "{typ}");
    }
    let h = json!({"alg": "EdDSA", "kid": "ed"}).to_string();
    assert!(!accepted(&f, &sign_ed(&h, &payload)));
}

#[test]
fn key_carrying_and_critical_headers_are_refused_without_fetching_anything() {
    let f = fixture();
    let payload = claims().to_string();
    let jwk = f.engine.jwks()["keys"][0].clone();
    for (name, value) in [
        ("jwk", jwk),
        ("jku", json!("https://evil.test/jwks.json")),
        ("x5u", json!("https://evil.test/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
        ("cty", json!("JWT")),
    ] {
        let mut h = json!({"alg": "EdDSA", "typ": "session+jwt", "kid": "ed"});
        h[name] = value;
        assert!(!accepted(&f, &sign_ed(&h.to_string(), &payload)), "{name}");
    }
}

#[test]
fn duplicate_member_names_are_refused() {
    let f = fixture();
    let h = header("EdDSA", "ed");
    let payload = claims().to_string();
    let dup_sub = payload.replacen(
        "\"sub\":\"alice\"",
        "\"sub\":\"alice\",\"sub\":\"admin\"",
        1,
    );
    assert_ne!(dup_sub, payload);
    assert!(!accepted(&f, &sign_ed(&h, &dup_sub)));
    let dup_escaped = payload.replacen(
        "\"sub\":\"alice\"",
        "\"sub\":\"alice\",\"s\\u0075b\":\"admin\"",
        1,
    );
    assert!(!accepted(&f, &sign_ed(&h, &dup_escaped)));
    let dup_data = payload.replacen(
        "\"role\":\"user\"",
        "\"role\":\"user\",\"role\":\"admin\"",
        1,
    );
    assert_ne!(dup_data, payload);
    assert!(!accepted(&f, &sign_ed(&h, &dup_data)));
    let dup_header = r#"{"alg":"EdDSA","typ":"session+jwt","kid":"hs","kid":"ed"}"#;
    assert!(!accepted(&f, &sign_ed(dup_header, &payload)));
    // Unknown claims are refused too: a verifier never ignores what it does not understand.
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["admin"], json!(true)))
    ));
    assert!(!accepted(
        &f,
        &sign_ed(&h, &with(claims(), &["tsr", "admin"], json!(true)))
    ));
}

#[test]
fn wrong_segment_counts_are_refused() {
    let f = fixture();
    let token = sign_ed(&header("EdDSA", "ed"), &claims().to_string());
    assert!(accepted(&f, &token));
    let segments: Vec<&str> = token.split('.').collect();
    for bad in [
        segments[0].to_owned(),
        format!("{}.{}", segments[0], segments[1]),
        format!("{token}.{}", segments[2]),
        format!("{token}."),
        format!("{}.{}..{}", segments[0], segments[1], segments[2]),
        // JWE-like five segments.
        format!("{token}.{}.{}", segments[1], segments[2]),
    ] {
        assert!(!accepted(&f, &bad), "{bad:.60}");
    }
}

#[test]
fn padding_and_non_base64url_characters_are_refused() {
    let f = fixture();
    let h = header("EdDSA", "ed");
    let payload = claims().to_string();
    let token = sign_ed(&h, &payload);
    let segments: Vec<&str> = token.split('.').collect();
    // The signature segment is not covered by the signature: strict decoding is the check.
    for sig in [
        format!("{}=", segments[2]),
        format!("{}==", segments[2]),
        segments[2].replace('-', "+").replace('_', "/") + "+",
        format!(" {}", segments[2]),
        format!("{}\n", segments[2]),
    ] {
        assert!(!accepted(
            &f,
            &format!("{}.{}.{sig}", segments[0], segments[1])
        ));
    }
    // Validly signed over padded or standard-alphabet payload text: refused all the same.
    let std_payload = base64::engine::general_purpose::STANDARD.encode(&payload);
    assert!(std_payload.contains('=') || std_payload.contains('+') || std_payload.contains('/'));
    let input = format!("{}.{std_payload}", b64(&h));
    let signature = SigningKey::from_bytes(&ED_SEED).sign(input.as_bytes());
    assert!(!accepted(
        &f,
        &format!("{input}.{}", b64(signature.to_bytes()))
    ));
    let padded_header = format!("{}==", b64(&h));
    let input = format!("{padded_header}.{}", b64(&payload));
    let signature = SigningKey::from_bytes(&ED_SEED).sign(input.as_bytes());
    assert!(!accepted(
        &f,
        &format!("{input}.{}", b64(signature.to_bytes()))
    ));
}

#[test]
fn a_100_kb_token_is_refused() {
    let f = fixture();
    let mut big = claims();
    big["tsr"]["data"]["blob"] = json!("x".repeat(100 * 1024));
    let token = sign_ed(&header("EdDSA", "ed"), &big.to_string());
    assert!(token.len() > 100 * 1024);
    assert!(!accepted(&f, &token));
    assert!(!accepted(&f, &"a".repeat(100 * 1024)));
    assert!(!accepted(
        &f,
        &format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c")
    ));
}

#[test]
fn key_rotation_and_verify_only_keys() {
    block_on(async {
        let clock = clock();
        let old = JwtKey::generate_ed25519("old").unwrap();
        let new = JwtKey::generate_hs256("new").unwrap();
        let before = JwtEngine::new(KeyRing::new(old.clone()))
            .unwrap()
            .with_clock(clock.clone());
        let during = JwtEngine::new(KeyRing::new(new.clone()).with_key(old.clone()).unwrap())
            .unwrap()
            .with_clock(clock.clone());
        let after = JwtEngine::new(KeyRing::new(new))
            .unwrap()
            .with_clock(clock.clone());
        let token = issue(&before, Some("alice")).await;
        assert!(load(&during, &token).await.is_some());
        assert!(load(&after, &token).await.is_none());
        assert!(load(&after, &issue(&during, None).await).await.is_some());

        // Another service holding only the public key (from the JWKS) verifies alone.
        let jwks = before.jwks();
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let public = JwtKey::ed25519_public("old", &x).unwrap();
        assert_eq!(public.algorithm(), Algorithm::EdDsa);
        assert!(matches!(
            JwtEngine::new(KeyRing::new(public.clone())),
            Err(KeyError::PrimaryCannotSign(_))
        ));
        let verifier = JwtEngine::new(
            KeyRing::new(JwtKey::generate_ed25519("mine").unwrap())
                .with_key(public)
                .unwrap(),
        )
        .unwrap()
        .with_clock(clock.clone());
        assert_eq!(
            load(&verifier, &token).await.unwrap().subject(),
            Some("alice")
        );
    });
}

#[test]
fn jwks_has_only_public_keys() {
    let f = fixture();
    let jwks = f.engine.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "HS256 secrets are never published");
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], "ed");
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    assert_eq!(
        x,
        SigningKey::from_bytes(&ED_SEED).verifying_key().to_bytes()
    );
    assert!(jwk.get("d").is_none());
    let text = jwks.to_string();
    assert!(!text.contains(&b64(ED_SEED)) && !text.contains(&b64(HS_SECRET)));
}

#[test]
fn weak_jwt_keys_are_refused() {
    assert!(matches!(
        JwtKey::hs256("k", &[0x3c; 31]),
        Err(KeyError::TooShort { .. })
    ));
    assert!(matches!(
        JwtKey::hs256("k", b"a-very-long-but-human-chosen-passphrase"),
        Err(KeyError::LowEntropy(_))
    ));
    assert!(matches!(
        JwtKey::ed25519_from_seed("k", &[1; 32]),
        Err(KeyError::LowEntropy(_))
    ));
    assert!(matches!(
        JwtKey::ed25519_from_seed("k", &[1; 31]),
        Err(KeyError::WrongLength { .. })
    ));
    // The identity point is a weak (small-order) public key.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(
        JwtKey::ed25519_public("k", &identity),
        Err(KeyError::InvalidPublicKey(_))
    ));
    let key = JwtKey::hs256("k", &HS_SECRET).unwrap();
    assert!(!format!("{key:?}").contains(&b64(HS_SECRET)[..8]));
    assert!(
        JwtKey::hs256("k", &[HS_SECRET, HS_SECRET].concat()).is_ok(),
        "longer secrets are fine"
    );
}

#[test]
fn the_typ_and_alg_of_issued_tokens_are_explicit() {
    let f = fixture();
    let token = block_on(issue(&f.engine, Some("alice")));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "typ": "session+jwt", "kid": "ed"})
    );
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for claim in ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim}");
    }
    assert_eq!(claims["exp"], json!(T0 / 1000 + 600));
    assert_eq!(claims["iss"], "https://issuer.test");
    let _: &dyn Engine = &f.engine;
}

#[test]
fn the_verified_token_memo_skips_only_the_signature_check() {
    let f = fixture();
    let token = block_on(issue(&f.engine, Some("alice")));
    // Verified once, now remembered.
    assert!(accepted(&f, &token));
    assert!(accepted(&f, &token));
    // Another configuration sharing the memo still checks every claim.
    let other_issuer = f.engine.clone().with_issuer("https://other.test");
    assert!(block_on(other_issuer.load(&token)).unwrap().is_none());
    let other_audience = f.engine.clone().with_audience("admin");
    assert!(block_on(other_audience.load(&token)).unwrap().is_none());
    // And time still runs out for a remembered token.
    f.clock.advance(Duration::from_secs(600));
    assert!(!accepted(&f, &token));
    // With the memo off, the same answers.
    let plain = f.engine.clone().with_verified_token_memo(0);
    f.clock.advance(Duration::from_secs(1));
    let fresh = block_on(issue(&plain, None));
    assert!(block_on(plain.load(&fresh)).unwrap().is_some());
    assert!(block_on(plain.load(&token)).unwrap().is_none());
}

#[test]
fn a_tiny_memo_stays_bounded_and_correct() {
    let f = fixture();
    let engine = f.engine.clone().with_verified_token_memo(2);
    let tokens: Vec<String> = (0..10).map(|_| block_on(issue(&engine, None))).collect();
    for _ in 0..2 {
        for token in &tokens {
            assert!(block_on(engine.load(token)).unwrap().is_some());
        }
    }
}
