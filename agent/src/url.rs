//! The login URL a participant opens: `http://<host>:<port><path>?token=<t>`
//! (`https://` when the agent serves TLS in front of Jupyter, docs/tls.md),
//! where the host comes from the ECS metadata service (docs/metadata.md)
//! when `url_host = "auto"`.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use tracing::{debug, info};

pub use crate::config::Host;
use crate::config::UrlHost;

/// The whole metadata look-up stays under this, so that off the cloud it costs
/// well under two seconds.
const METADATA_BUDGET: Duration = Duration::from_millis(1500);
const METADATA_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Addresses tried in order: the elastic IP, the public IP, the private IP.
const ADDRESS_KEYS: [&str; 3] = ["eipv4", "public-ipv4", "private-ipv4"];

/// Builds the login URL; `https` when the agent serves TLS.
pub fn login_url(https: bool, host: &Host, port: u16, path: &str, token: &str) -> String {
    let scheme = if https { "https" } else { "http" };
    if token.is_empty() {
        // A server that checks no token ([jupyter] token = "none").
        return format!("{scheme}://{host}:{port}{path}");
    }
    format!("{scheme}://{host}:{port}{path}?token={token}")
}

/// The host participants reach the instance by.
pub async fn resolve_host(setting: &UrlHost, metadata_endpoint: &str) -> Host {
    match setting {
        UrlHost::Explicit(h) => h.clone(),
        UrlHost::Auto => match tokio::time::timeout(METADATA_BUDGET, from_metadata(metadata_endpoint)).await {
            Ok(Some((key, addr))) => {
                info!(source = key, host = %addr, "URL host from the ECS metadata service");
                Host::Ip(addr)
            }
            _ => {
                let addr = primary_address().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
                info!(host = %addr, "no ECS metadata service answered; using the machine's primary address");
                Host::Ip(addr)
            }
        },
    }
}

/// Asks the metadata service, hardened mode first (a session token), then plain.
async fn from_metadata(endpoint: &str) -> Option<(&'static str, IpAddr)> {
    let client = crate::http::client()
        .no_proxy()
        .connect_timeout(METADATA_CONNECT_TIMEOUT)
        .timeout(Duration::from_millis(700))
        .build()
        .ok()?;
    let token = match client
        .put(format!("{endpoint}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => resp.text().await.ok().filter(|t| !t.trim().is_empty()),
        Ok(resp) => {
            debug!(status = resp.status().as_u16(), "metadata service has no hardened mode; asking plainly");
            None
        }
        // Nothing listens there: we are not on ECS.
        Err(e) => {
            debug!(error = %e, "no metadata service");
            return None;
        }
    };
    for key in ADDRESS_KEYS {
        let mut req = client.get(format!("{endpoint}/latest/meta-data/{key}"));
        if let Some(t) = &token {
            req = req.header("X-aliyun-ecs-metadata-token", t.trim());
        }
        let Ok(resp) = req.send().await else { return None };
        if !resp.status().is_success() {
            continue;
        }
        if let Ok(Ok(addr)) = resp.text().await.map(|text| text.trim().parse::<IpAddr>()) {
            return Some((key, addr));
        }
    }
    None
}

/// The source address of the default route: connecting a UDP socket sends
/// nothing, it only asks the kernel which address it would use.
pub fn primary_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("100.100.100.200:80").ok()?;
    let addr = socket.local_addr().ok()?.ip();
    (!addr.is_unspecified()).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        s.parse().unwrap()
    }

    #[test]
    fn urls() {
        assert_eq!(login_url(false, &host("1.2.3.4"), 8888, "/tree", "abc"), "http://1.2.3.4:8888/tree?token=abc");
        assert_eq!(login_url(false, &host("::1"), 8888, "/", "abc"), "http://[::1]:8888/?token=abc");
        assert_eq!(login_url(true, &host("[::1]"), 8888, "/lab", "abc"), "https://[::1]:8888/lab?token=abc");
        assert_eq!(login_url(true, &host("1.2.3.4"), 8888, "/", ""), "https://1.2.3.4:8888/");
        assert_eq!(login_url(false, &host("lab.example.org"), 80, "/", "t"), "http://lab.example.org:80/?token=t");
    }

    /// A host is parsed once: an address with or without brackets, or a name.
    #[test]
    fn hosts() {
        assert_eq!(host("[2001:db8::7]"), Host::Ip("2001:db8::7".parse().unwrap()));
        assert_eq!(host("2001:db8::7"), host("[2001:db8::7]"));
        assert_eq!(host("203.0.113.7").ip(), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(host("lab.example.org"), Host::Name("lab.example.org".into()));
        for bad in ["", "a:80", "[1.2.3.4]", "h/x", "[::1"] {
            assert!(bad.parse::<Host>().is_err(), "{bad}");
        }
    }
}
