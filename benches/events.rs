//! The load generator's events: realistic OCSF 1.8 events of about 600
//! bytes, written straight into the request body. Building them as
//! `serde_json::Value`s first cost the load generator ~0.45 of the two
//! shared cores at 38k events/s (BTreeMap inserts, malloc, `format!`),
//! CPU the server then lacked; the server parses and canonicalizes what
//! it gets, so the key order here does not matter.

use std::io::Write;

/// Every tenth event is an Account Change (3001: lock, MFA factor enable,
/// password change), the others Authentication (3002), some failed.
pub fn write_event(out: &mut Vec<u8>, run: u64, n: u64) {
    let user = n % 5000;
    let ip = (n % 7, n % 251, n % 253);
    let time = 1_763_800_000_000u64 + n;
    let uid = event_uid(run, n);
    // Writing into a Vec cannot fail.
    if n % 10 == 5 {
        let activity = [9, 10, 3][(n / 10 % 3) as usize];
        write!(
            out,
            r#"{{"activity_id":{activity},"actor":{{"user":{{"name":"iam-automation","uid":"svc-iam"}}}},"category_uid":3,"class_uid":3001,"message":"account policy enforcement","metadata":{{"product":{{"name":"Example Directory","vendor_name":"Example"}},"uid":"{uid}","version":"1.8.0"}},"severity_id":2,"src_endpoint":{{"ip":"10.{}.{}.{}"}},"status_id":1,"time":{time},"user":{{"name":"user{user}@example.com","type_id":1,"uid":"u-{user:06}"}}}}"#,
            ip.0, ip.1, ip.2
        )
        .unwrap();
        return;
    }
    let status = if n.is_multiple_of(10) { 2 } else { 1 };
    let mfa = n.is_multiple_of(3);
    let device = user % 97;
    write!(
        out,
        r#"{{"activity_id":1,"auth_factors":[{{"device":{{"type_id":5,"uid":"dev-{device}"}},"factor_type_id":3}}],"auth_protocol_id":2,"category_uid":3,"class_uid":3002,"dst_endpoint":{{"hostname":"login.example.com","svc_name":"sso"}},"http_request":{{"http_method":"POST","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0"}},"is_mfa":{mfa},"metadata":{{"product":{{"name":"Example IdP","vendor_name":"Example"}},"uid":"{uid}","version":"1.8.0"}},"severity_id":1,"src_endpoint":{{"hostname":"laptop-17.corp.example.com","ip":"10.{}.{}.{}"}},"status_id":{status},"time":{time},"type_uid":300201,"user":{{"name":"user{user}@example.com","type_id":1,"uid":"u-{user:06}"}}}}"#,
        ip.0, ip.1, ip.2
    )
    .unwrap();
}

/// One event, or an array of `batch` events, numbered from `base`.
pub fn request_body(run: u64, base: u64, batch: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch * 700 + 2);
    if batch == 1 {
        write_event(&mut out, run, base);
        return out;
    }
    out.push(b'[');
    for i in 0..batch as u64 {
        if i > 0 {
            out.push(b',');
        }
        write_event(&mut out, run, base + i);
    }
    out.push(b']');
    out
}

/// A producer-style `metadata.uid`: a random-looking UUID, unique to the
/// run and `n`, so that runs on one log never repeat an event and the uid
/// index sees keys as scattered as real producers' UUIDs.
pub fn event_uid(run: u64, n: u64) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::new()
        .chain_update(run.to_be_bytes())
        .chain_update(n.to_be_bytes())
        .finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let x: Vec<u8> = h[..16]
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 15) as usize]])
        .collect();
    let x = std::str::from_utf8(&x).expect("hex is ASCII");
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}
