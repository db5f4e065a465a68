//! A real kube-apiserver with its etcd (built by scripts/test from the Go module proxy), on
//! free ports, with a self-signed certificate it makes itself and a static token; stopped on
//! drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "herald-test-token";
/// The ServiceAccount herald/herald of examples/kubernetes, as a static token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "herald-service-account-token";

pub struct KubeApiServer {
    etcd: Child,
    apiserver: Child,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    dir: tempfile::TempDir,
}

fn binary(variable: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{variable} is not set: run the tests through scripts/test, which builds it")
        })
}

fn free_port() -> u16 {
    super::free_port()
}

impl KubeApiServer {
    /// Every request allowed (AlwaysAllow).
    pub async fn start() -> Self {
        Self::start_with("AlwaysAllow").await
    }

    /// RBAC enforced: only [`TOKEN`] (system:masters) bypasses it; [`SERVICE_ACCOUNT_TOKEN`]
    /// authenticates as the ServiceAccount `herald/herald` and gets what RBAC grants it.
    pub async fn start_with_rbac() -> Self {
        Self::start_with("RBAC").await
    }

    /// Serves on `port` (chosen by the test beforehand, e.g. for a client started first).
    pub async fn start_on(port: u16) -> Self {
        Self::start_at("AlwaysAllow", port).await
    }

    async fn start_with(authorization_mode: &str) -> Self {
        Self::start_at(authorization_mode, free_port()).await
    }

    async fn start_at(authorization_mode: &str, secure: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let keys = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=herald-test-service-accounts", "-keyout"])
            .arg(path.join("sa.key"))
            .arg("-out")
            .arg(path.join("sa.crt"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl makes the service-account key");
        assert!(keys.success());
        std::fs::write(
            path.join("tokens.csv"),
            format!(
                "{TOKEN},admin,admin,system:masters\n{SERVICE_ACCOUNT_TOKEN},system:serviceaccount:herald:herald,herald-sa,\"system:serviceaccounts,system:serviceaccounts:herald\"\n"
            ),
        )
        .unwrap();
        let (client, peer) = (free_port(), free_port());
        let etcd = Command::new(binary("HERALD_ETCD"))
            .arg("--data-dir")
            .arg(path.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run etcd");
        let apiserver = Command::new(binary("HERALD_KUBE_APISERVER"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={secure}"))
            .arg("--cert-dir")
            .arg(path.join("certs"))
            .arg("--token-auth-file")
            .arg(path.join("tokens.csv"))
            .arg(format!("--authorization-mode={authorization_mode}"))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-account-key-file")
            .arg(path.join("sa.crt"))
            .arg("--service-account-signing-key-file")
            .arg(path.join("sa.key"))
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path.join("apiserver.log")).unwrap())
            .spawn()
            .expect("run kube-apiserver");
        let server = Self {
            etcd,
            apiserver,
            url: format!("https://127.0.0.1:{secure}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = server.get("/readyz").await.0 == 200;
            if ready {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver did not become ready: {}",
                std::fs::read_to_string(server.dir.path().join("apiserver.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match Self::client()
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a test reading its own server's answer"
                )]
                let body = response.bytes().await.unwrap_or_default();
                (status, serde_json::from_slice(&body).unwrap_or_default())
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, Some(body), "application/json")
            .await
    }

    /// Installs every CRD Herald generates and waits until each is established.
    pub async fn install_crds(&self) {
        let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
        let mut names = Vec::new();
        for crd in herald_crds::manifests::all() {
            let body = serde_json::to_value(&crd).unwrap();
            let (status, answer) = self.post(crds, &body).await;
            assert_eq!(status, 201, "{answer}");
            names.push(crd.metadata.name.clone().unwrap());
        }
        for name in names {
            super::wait_for_async(&format!("CRD {name} established"), || async {
                let (_, crd) = self.get(&format!("{crds}/{name}")).await;
                crd["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                })
            })
            .await;
        }
    }

    /// A JSON merge patch.
    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(body),
            "application/merge-patch+json",
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::DELETE, path, None, "application/json")
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        content_type: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = Self::client()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", content_type);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("kube-apiserver answers");
        let status = response.status().as_u16();
        #[allow(
            clippy::disallowed_methods,
            reason = "a test reading its own server's answer"
        )]
        let body = response.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// A kubeconfig for this server (its own self-signed certificate is trusted blindly, as
    /// for any test cluster), written next to its data.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig_with(TOKEN)
    }

    /// A kubeconfig for a server that will serve on `port` (see [`KubeApiServer::start_on`]).
    pub fn kubeconfig_for_port(dir: &std::path::Path, port: u16) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            kubeconfig_text(&format!("https://127.0.0.1:{port}"), TOKEN),
        )
        .unwrap();
        path
    }

    /// A kubeconfig that authenticates with `token`.
    pub fn kubeconfig_with(&self, token: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{token}"));
        let text = kubeconfig_text(&self.url, token);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

fn kubeconfig_text(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\n"
    )
}
