//! A real ACME server: Debian's `pebble` (Let's Encrypt's test CA, 2.4.0 on
//! Debian 12) on loopback ports of the test's own, for the agent's `[tls]`
//! tests; stopped when dropped.
//!
//! Debian ships none of the test certificates of pebble's repository, so the
//! harness makes its own: a CA and a listener certificate for the IP
//! 127.0.0.1 signed by it ([`LoopbackCert`]). Pebble generates a new
//! issuing root at every start and serves it on its management port, so
//! [`Pebble::start`] fetches it once pebble answers and writes one file,
//! [`Pebble::ca_file`], holding both: the agent gets it as `[tls] ca_file`,
//! trusted for the directory's HTTPS and for checking the chain pebble
//! issues.
//!
//! Pebble validates challenges by connecting to 127.0.0.1 on the ports the
//! test names (`http_port` for http-01, `tls_port` for tls-alpn-01): the
//! agent's listener. It logs each request it handles, which is how a test
//! counts the orders the agent placed ([`Pebble::new_orders`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::wss::https_client;

/// What a test chooses about the ACME server.
pub struct PebbleOptions {
    /// Where pebble connects on 127.0.0.1 to validate http-01 challenges.
    pub http_port: u16,
    /// Where pebble connects on 127.0.0.1 to validate tls-alpn-01 challenges.
    pub tls_port: u16,
    /// The validity of the certificates it issues, in seconds (they last one
    /// second less: pebble counts the end second inclusively). Short ones
    /// make the agent renew within a test.
    pub validity_secs: u64,
    /// Require external account binding with no key known: pebble refuses
    /// every new account (`urn:ietf:params:acme:error:externalAccountRequired`),
    /// the case of an ACME server that will not issue.
    pub refuse_accounts: bool,
}

/// A running pebble; killed and reaped when dropped.
pub struct Pebble {
    /// The ACME directory URL, `https://127.0.0.1:PORT/dir`.
    pub directory: String,
    /// The listener CA's PEM followed by this run's issuing root's PEM.
    pub ca_file: PathBuf,
    /// This run's issuing root (`GET /roots/0` on the management port).
    pub root_pem: String,
    /// Pebble's stdout and stderr.
    pub log: PathBuf,
    root_file: PathBuf,
    child: Child,
}

/// The line pebble 2.4.0 logs when its WFE receives a newOrder request,
/// whatever it then answers: `Pebble 2026/01/02 03:04:05 POST /order-plz ->
/// calling handler()`. (An order it accepts is followed by `Added order "ID"
/// to the db`.)
const NEW_ORDER_LINE: &str = " POST /order-plz -> calling handler()";

/// How many times [`Pebble::start`] tries fresh ports when pebble exits
/// before answering (another process took a port between
/// [`free_port`] and pebble's bind).
const ATTEMPTS: usize = 3;

impl Pebble {
    /// Starts pebble with its files in `dir` (`pebble-*`), on free loopback
    /// ports for the directory and management listeners, and returns once
    /// the directory answers and the issuing root is fetched. Panics with
    /// pebble's log when it does not answer within 30 s.
    pub fn start(dir: &Path, opts: &PebbleOptions) -> Pebble {
        let listener = LoopbackCert::generate("jupyter-agent e2e pebble listener CA");
        let listener_ca = dir.join("pebble-listener-ca.pem");
        let cert = dir.join("pebble-listener-cert.pem");
        let key = dir.join("pebble-listener-key.pem");
        std::fs::write(&listener_ca, &listener.ca_pem).expect("write the listener CA");
        std::fs::write(&cert, &listener.cert_pem).expect("write the listener certificate");
        std::fs::write(&key, &listener.key_pem).expect("write the listener key");
        let log = dir.join("pebble.log");
        let client = https_client(&listener_ca);

        for attempt in 1..=ATTEMPTS {
            let (listen, management) = (free_port(), free_port());
            let eab = if opts.refuse_accounts {
                serde_json::json!({"externalAccountBindingRequired": true, "externalAccountMACKeys": {}})
            } else {
                serde_json::json!({"externalAccountBindingRequired": false})
            };
            let mut config = serde_json::json!({
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": opts.http_port,
                "tlsPort": opts.tls_port,
                "ocspResponderURL": "",
                "certificateValidityPeriod": opts.validity_secs,
            });
            config.as_object_mut().unwrap().extend(eab.as_object().unwrap().clone());
            let config_file = dir.join("pebble-config.json");
            std::fs::write(&config_file, serde_json::json!({ "pebble": config }).to_string())
                .expect("write pebble's config");

            let out = File::create(&log).expect("create pebble's log");
            let err = out.try_clone().expect("pebble's log, twice");
            let mut child = Command::new("pebble")
                .arg("-config")
                .arg(&config_file)
                .arg("-strict")
                // No random validation sleeps, every good nonce taken, a new
                // authorization for each order: fast and deterministic.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("pebble (Debian's package) runs");

            let directory = format!("https://127.0.0.1:{listen}/dir");
            let deadline = Instant::now() + Duration::from_secs(30);
            let answered = loop {
                if let Ok(response) = client.get(&directory).send() {
                    if response.status().is_success() {
                        break true;
                    }
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("pebble did not answer at {directory} within 30 s:\n{}", read_log(&log));
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !answered {
                let text = read_log(&log);
                if attempt < ATTEMPTS && text.contains("address already in use") {
                    continue;
                }
                panic!("pebble exited before answering:\n{text}");
            }

            let roots = format!("https://127.0.0.1:{management}/roots/0");
            let root_pem = client
                .get(&roots)
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text())
                .unwrap_or_else(|e| panic!("GET {roots}: {e}\n{}", read_log(&log)));
            assert!(root_pem.contains("-----BEGIN CERTIFICATE-----"), "GET {roots}: {root_pem}");
            let root_pem = with_newline(root_pem);
            let root_file = dir.join("pebble-root.pem");
            std::fs::write(&root_file, &root_pem).expect("write pebble's root");
            let ca_file = dir.join("pebble-ca.pem");
            std::fs::write(&ca_file, format!("{}{root_pem}", with_newline(listener.ca_pem.clone())))
                .expect("write pebble's CA file");
            return Pebble { directory, ca_file, root_pem, log, root_file, child };
        }
        unreachable!("the last attempt panics or returns")
    }

    /// The issuing root alone, in a file (for `curl --cacert`, or a client
    /// that must trust the served chain and nothing else).
    pub fn root_file(&self) -> PathBuf {
        self.root_file.clone()
    }

    /// How many newOrder requests pebble has received so far (accepted or
    /// not): the orders the agent placed. See [`NEW_ORDER_LINE`].
    pub fn new_orders(&self) -> usize {
        read_log(&self.log).lines().filter(|line| line.contains(NEW_ORDER_LINE)).count()
    }

    /// Pebble's log so far, for a failing test's message.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for the IP 127.0.0.1 (and `localhost`) signed by
/// it, ECDSA P-256, valid from 1975 to 4096 (rcgen's defaults): for pebble's
/// listener, or any test server that a client must verify by a CA it is
/// given.
pub struct LoopbackCert {
    pub ca_pem: String,
    pub cert_pem: String,
    /// PKCS#8.
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

impl LoopbackCert {
    /// A new CA named `ca_name` (its common name) and a leaf signed by it.
    pub fn generate(ca_name: &str) -> LoopbackCert {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().expect("a listener key");
        // rcgen makes "127.0.0.1" an IP address SAN, "localhost" a DNS one.
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &issuer).expect("the listener certificate");
        LoopbackCert {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
}

fn with_newline(mut pem: String) -> String {
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    pem
}
