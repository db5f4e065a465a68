//! The per-event cost of transport encryption at ingress: one Herald on the embedded log
//! serving a broker over HTTP and HTTPS (TLS 1.3, keep-alive connections), measured in the
//! same run with the same events. The certificate comes from the openssl CLI; without it
//! the row says so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::processes::Herald;
use crate::throughput::{throughput, Throughput};
use crate::Settings;

/// Closed-loop ingress without a trigger, over HTTP and over HTTPS.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsPoint {
    pub connections: usize,
    pub http: Throughput,
    pub https: Throughput,
}

/// Measures HTTP, then HTTPS, on one Herald with `connections` keep-alive connections.
pub async fn measure(
    settings: &Settings,
    args: &[String],
    payload: &Bytes,
    http_pool: &[reqwest::Client],
    connections: usize,
) -> anyhow::Result<TlsPoint> {
    let dir = tempfile::tempdir()?;
    certificate(dir.path())?;
    let mut args = args.to_vec();
    for (flag, value) in [
        ("--tls-cert", dir.path().join("server.crt")),
        ("--tls-key", dir.path().join("server.key")),
    ] {
        args.extend([flag.to_owned(), value.display().to_string()]);
    }
    args.extend(["--tls-listen".into(), "127.0.0.1:0".into()]);
    let config = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: bench}\n";
    let herald = Herald::start(&settings.herald, config, &args)?;
    let https = herald
        .https_ingress
        .clone()
        .ok_or_else(|| anyhow::anyhow!("herald did not log its https ingress"))?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.crt"))?)?;
    let https_pool: Vec<reqwest::Client> = (0..connections.max(1))
        .map(|_| {
            reqwest::Client::builder()
                .add_root_certificate(ca.clone())
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
        })
        .collect::<Result<_, _>>()?;
    let http_url = format!("{}/default/bench", herald.ingress);
    let https_url = format!("{https}/default/bench");
    Ok(TlsPoint {
        connections,
        http: throughput(&herald, &http_url, http_pool, payload, settings, None).await,
        https: throughput(&herald, &https_url, &https_pool, payload, settings, None).await,
    })
}

/// A CA and a server certificate for 127.0.0.1 it signs, in `dir`.
fn certificate(dir: &Path) -> anyhow::Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=bench-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
        [
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    for args in steps {
        let output = Command::new("openssl")
            .current_dir(dir)
            .args(&args)
            .output()
            .map_err(|error| anyhow::anyhow!("cannot run the openssl CLI: {error}"))?;
        anyhow::ensure!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
