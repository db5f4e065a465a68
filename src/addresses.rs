//! The addresses Herald advertises for its addressables under Knative's transport
//! encryption: https listed first in `status.addresses` (senders take the first), with the
//! CA bundle clients need (`CACerts`); `status.address` is http when plain HTTP is also
//! served (permissive) and https under `--tls-only` (strict).

use herald_crds::status::Addressable;

/// Which schemes the ingress serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// The HTTPS ingress, when TLS is on.
    pub https: Option<HttpsIngress>,
    /// `--tls-only`: plain HTTP is not served, so not advertised.
    pub strict: bool,
}

/// Where the HTTPS ingress is reached, and the CA bundle it advertises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsIngress {
    /// `https://host:port`.
    pub base_url: String,
    /// PEM, Knative's `ca.crt` of the server secret.
    pub ca_certs: Option<String>,
}

impl Transport {
    /// `status.address` and `status.addresses` of the addressable at `path` (starting with
    /// `/`), its http URL under `http_base`.
    pub fn addresses(&self, http_base: &str, path: &str) -> (Addressable, Vec<Addressable>) {
        let http = Addressable {
            name: Some("http".into()),
            url: Some(format!("{http_base}{path}")),
            ca_certs: None,
            audience: None,
        };
        let Some(https) = &self.https else {
            return (http.clone(), vec![http]);
        };
        let secure = Addressable {
            name: Some("https".into()),
            url: Some(format!("{}{path}", https.base_url)),
            ca_certs: https.ca_certs.clone(),
            audience: None,
        };
        match self.strict {
            true => (secure.clone(), vec![secure]),
            false => (http.clone(), vec![secure, http]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(strict: bool) -> Transport {
        Transport {
            https: Some(HttpsIngress {
                base_url: "https://h:8443".into(),
                ca_certs: Some("PEM".into()),
            }),
            strict,
        }
    }

    #[test]
    fn without_tls_only_http_is_advertised() {
        let (address, addresses) = Transport::default().addresses("http://h:8080", "/ns/b");
        assert_eq!(address.url.as_deref(), Some("http://h:8080/ns/b"));
        assert_eq!(addresses, vec![address]);
    }

    #[test]
    fn permissive_lists_https_first_and_keeps_http_as_the_address() {
        let (address, addresses) = tls(false).addresses("http://h:8080", "/ns/b");
        assert_eq!(address.name.as_deref(), Some("http"));
        let names: Vec<_> = addresses.iter().map(|a| a.name.as_deref()).collect();
        assert_eq!(names, [Some("https"), Some("http")]);
        assert_eq!(addresses[0].url.as_deref(), Some("https://h:8443/ns/b"));
        assert_eq!(addresses[0].ca_certs.as_deref(), Some("PEM"));
    }

    #[test]
    fn strict_advertises_https_only() {
        let (address, addresses) = tls(true).addresses("http://h:8080", "/ns/b");
        assert_eq!(address.url.as_deref(), Some("https://h:8443/ns/b"));
        assert_eq!(addresses, vec![address]);
    }
}
