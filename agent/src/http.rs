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

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_the_ring_provider() {
        super::client().build().unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
