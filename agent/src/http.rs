//! The one way the agent builds an HTTP client (reqwest, for the token's
//! proof, the metadata service and workspace tarballs over https): rustls
//! with the `ring` provider, installed here once per process and explicitly,
//! so that no feature unification of the workspace can leave a client
//! without one (reqwest's own default would be aws-lc, twice the size).

use std::sync::Once;

/// A client builder with the crypto provider in place.
pub fn client() -> reqwest::ClientBuilder {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err only when a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// A client for what the container serves (the token's proof, directly or
/// through the front, and doctor's): no proxy, a deadline per request, and
/// no redirect followed, so that a server in the container cannot make the
/// agent send requests (and the token) anywhere on the host's network; a
/// redirect is an answer like any other (docs/threat-model.md).
pub fn to_container(timeout: std::time::Duration) -> reqwest::ClientBuilder {
    client().no_proxy().redirect(reqwest::redirect::Policy::none()).timeout(timeout)
}

/// A download client (workspace tarballs, image archives): connects within
/// 10 s, gives up on a transfer that stalls for 60 s (the caller retries or
/// resumes), and ends a whole download after `total` when given.
pub fn download_client(total: Option<std::time::Duration>) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let mut builder = client()
        .user_agent(concat!("jupyter-agent/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60));
    if let Some(total) = total {
        builder = builder.timeout(total);
    }
    builder.build().context("building the HTTP client")
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_the_ring_provider() {
        super::client().build().unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
