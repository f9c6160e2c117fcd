//! The HTTPS test harness itself, before any test of the agent relies on it:
//! `common::pebble` starts a pebble that answers over the CA it made and
//! serves its issuing root, and refuses accounts when asked; `common::wss`'s
//! TLS clients read and pin the certificate a server presents.
//!
//! No Docker engine: pebble (Debian's package) and loopback sockets only.

use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use serde_json::Value;

use crate::common::free_port;
use crate::common::pebble::{LoopbackCert, Pebble, PebbleOptions};
use crate::common::wss::{https_client, served_leaf, sha256_fingerprint, tls_stream, try_tls_stream};

fn options(refuse_accounts: bool) -> PebbleOptions {
    PebbleOptions { http_port: free_port(), tls_port: free_port(), validity_secs: 60, refuse_accounts }
}

/// The directory answers over the listener CA in `ca_file`, which also
/// holds the issuing root; the log has the request lines `new_orders` counts.
#[test]
fn pebble_serves_its_directory_and_its_issuing_root() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), &options(false));
    let directory: Value = https_client(&pebble.ca_file).get(&pebble.directory).send().unwrap().json().unwrap();
    assert!(directory["newOrder"].as_str().is_some_and(|u| u.starts_with("https://127.0.0.1:")), "{directory}");
    assert_eq!(directory["meta"]["externalAccountRequired"], false, "{directory}");

    let ca_file = std::fs::read_to_string(&pebble.ca_file).unwrap();
    assert_eq!(ca_file.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{ca_file}");
    assert!(ca_file.ends_with(&pebble.root_pem));
    assert_eq!(std::fs::read_to_string(pebble.root_file()).unwrap(), pebble.root_pem);
    // The same " -> calling handler()" lines as the newOrder one it counts.
    assert!(pebble.log_text().contains(" GET /dir -> calling handler()"), "{}", pebble.log_text());
    assert_eq!(pebble.new_orders(), 0);
}

/// With `refuse_accounts`, the directory says external account binding is
/// required (and pebble knows no key, so every new account is refused).
#[test]
fn pebble_refusing_accounts_says_so_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), &options(true));
    let directory: Value = https_client(&pebble.ca_file).get(&pebble.directory).send().unwrap().json().unwrap();
    assert_eq!(directory["meta"]["externalAccountRequired"], true, "{directory}");
}

/// `served_leaf` reads the certificate a TLS server presents, whoever
/// signed it; `tls_stream` trusts the roots it is given and no others.
/// Against a TLS listener that completes handshakes and nothing more (the
/// kernel channel client is proven against the agent, in `tls::`).
#[test]
fn tls_clients_pin_the_served_certificate() {
    let cert = LoopbackCert::generate("jupyter-agent e2e wss CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.ca_pem).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert_der.clone())], PrivateKeyDer::Pkcs8(cert.key_der.into()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut conn = ServerConnection::new(config).unwrap();
                while conn.is_handshaking() {
                    if conn.complete_io(&mut tcp).is_err() {
                        return;
                    }
                }
                // Held open until the client closes.
                let _ = conn.complete_io(&mut tcp);
            });
        }
    });

    let leaf = served_leaf(port);
    assert_eq!(leaf, cert.cert_der);
    let fingerprint = sha256_fingerprint(&leaf);
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    assert!(fingerprint.chars().all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()), "{fingerprint}");

    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, LoopbackCert::generate("another CA").ca_pem).unwrap();
    let untrusted = try_tls_stream(port, &other).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    let trusted = tls_stream(port, &ca);
    assert_eq!(trusted.conn.peer_certificates().unwrap()[0].as_ref(), cert.cert_der.as_slice());
}
