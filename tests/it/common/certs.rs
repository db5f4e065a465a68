//! Certificates made by the tests with the openssl CLI: a CA, and server certificates for
//! 127.0.0.1 and localhost that it signs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate authority in a folder of its own.
pub struct Ca {
    dir: tempfile::TempDir,
    pub cert: PathBuf,
}

/// A server certificate (leaf) and its key.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca {
            cert: dir.path().join("ca.crt"),
            dir,
        }
    }

    /// The CA certificate's PEM.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    /// A new server certificate for 127.0.0.1 and localhost, named `name` in this CA's folder.
    pub fn issue(&self, name: &str) -> Leaf {
        let dir = self.dir.path();
        std::fs::write(
            dir.join(format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
        Leaf {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}

/// An HTTPS client that trusts only the given CAs (not the system roots).
pub fn client_trusting(cas: &[&Ca]) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(std::time::Duration::from_secs(20));
    for ca in cas {
        let cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
        builder = builder.add_root_certificate(cert);
    }
    builder.build().unwrap()
}
