//! Health checks as keepalived's `vrrp_script` runs them: a script (exit 0 = healthy), a TCP connect
//! to this node's own address and a port (the ipfailover monitor port), or the arcts/keepalived
//! image's kube-apiserver `/healthz` probe, every `interval`, killed and counted as failed after
//! `timeout`; `rise` successes / `fall` failures in a row change the status.
//! A status change is logged as keepalived does (`VRRP_Script(<name>) succeeded|failed`) and sent to
//! the agent, which turns it into Fault (weight 0) or a priority change (weight ≠ 0).

use std::net::IpAddr;

use tokio::sync::mpsc;

pub use crate::config::{CheckKind, CheckSpec};

/// A check's series: its status, results and run time.
#[derive(Clone)]
pub struct CheckMetrics {
    pub up: prometheus::IntGauge,
    pub successes: prometheus::IntCounter,
    pub failures: prometheus::IntCounter,
    pub duration: prometheus::Histogram,
}

/// A check's status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckEvent {
    pub name: String,
    pub ok: bool,
}

async fn run_once(spec: &CheckSpec, target: IpAddr) -> bool {
    match &spec.kind {
        CheckKind::Tcp(port) => {
            matches!(
                tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect((target, *port))).await,
                Ok(Ok(_))
            )
        }
        CheckKind::KubeApiserver { address, port } => {
            kube_apiserver::healthy(&spec.name, *address, *port, spec.timeout).await
        }
        CheckKind::Script(cmd) => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c")
                .arg(cmd)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null());
            // Its own process group, so a timeout kills whatever the script started too.
            c.process_group(0);
            crate::script_security::apply(&mut c);
            let Ok(mut child) = c.spawn() else {
                tracing::warn!("VRRP_Script({}) cannot be started", spec.name);
                return false;
            };
            match tokio::time::timeout(spec.timeout, child.wait()).await {
                Ok(Ok(status)) => status.success(),
                Ok(Err(_)) => false,
                Err(_) => {
                    if let Some(pid) = child.id() {
                        // SAFETY: signalling the process group we created.
                        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                    }
                    let _ = child.wait().await;
                    tracing::warn!("VRRP_Script({}) timed out after {:?}", spec.name, spec.timeout);
                    false
                }
            }
        }
    }
}

/// The kube-apiserver probe: async HTTPS (hyper over tokio-rustls), so a slow API server never
/// blocks the agent's single-threaded runtime, and dropping the future at the timeout closes the
/// connections.
mod kube_apiserver {
    use std::{
        net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
        sync::Arc,
        time::Duration,
    };

    use hyper_util::rt::TokioIo;
    use tokio_rustls::{
        TlsConnector,
        rustls::{
            self, ClientConfig, DigitallySignedStruct, SignatureScheme,
            client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
            crypto::CryptoProvider,
            pki_types::{CertificateDer, ServerName, UnixTime},
        },
    };

    /// Accepts any server certificate, as the arcts script's `curl --insecure` does: the API server's
    /// certificate is signed by the cluster's own CA, which the node agent does not have. The
    /// handshake signatures are still checked, so the peer must hold the key of what it presents.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls_config() -> Result<Arc<ClientConfig>, rustls::Error> {
        // An explicit provider: no process-wide default has to be installed first.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// One `GET https://<host>/healthz`; the HTTP status, or why there is none.
    async fn get_healthz(
        tls: Arc<ClientConfig>,
        addrs: &[SocketAddr],
        name: ServerName<'static>,
        host: &str,
    ) -> Result<u16, String> {
        let tcp = tokio::net::TcpStream::connect(addrs)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let request = hyper::Request::get("/healthz")
            .header(hyper::header::HOST, host)
            .body(String::new())
            .map_err(|e| format!("request: {e}"))?;
        // The connection is driven here rather than spawned, so it ends with this future. When it
        // ends first (a `Connection: close` answer), the response has been handed over already or
        // the request fails: either way the response future is ready.
        let response = sender.send_request(request);
        tokio::pin!(response);
        let response = tokio::select! {
            response = &mut response => response,
            _ = conn => response.await,
        };
        response.map(|r| r.status().as_u16()).map_err(|e| format!("HTTP: {e}"))
    }

    /// Whether a GET of `/healthz` on localhost (and on `address` while this node holds it) answers
    /// 200 within `timeout`. The requests run concurrently, each given the whole timeout as curl's
    /// `--max-time` gave each of the script's.
    pub(super) async fn healthy(check: &str, address: IpAddr, port: u16, timeout: Duration) -> bool {
        let tls = match tls_config() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("VRRP_Script({check}) cannot set up TLS: {e}");
                return false;
            }
        };
        // curl resolves `localhost` to the loopback addresses itself; so does this, IPv4 first.
        let localhost = [
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ];
        let Ok(localhost_name) = ServerName::try_from("localhost") else {
            return false;
        };
        let local_host = format!("localhost:{port}");
        let local = get_healthz(tls.clone(), &localhost, localhost_name, &local_host);
        // Exact match (fix: the script grepped `ip addr` for it, so 10.0.0.1 matched 10.0.0.10).
        let holds = crate::config::host::local_addresses().contains(&address);
        let vip_addr = [SocketAddr::new(address, port)];
        let vip_host = SocketAddr::new(address, port).to_string();
        let vip = async {
            if holds {
                get_healthz(tls.clone(), &vip_addr, ServerName::IpAddress(address.into()), &vip_host)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let Ok((local, vip)) = tokio::time::timeout(timeout, async { tokio::join!(local, vip) }).await else {
            tracing::debug!("VRRP_Script({check}): no answer from the kube-apiserver within {timeout:?}");
            return false;
        };
        // 200 only (fix: the script's curl had no --fail, so any answer, even a 500, passed).
        let mut ok = true;
        for (url, result) in [
            (format!("https://localhost:{port}/healthz"), local.map(Some)),
            (format!("https://{vip_host}/healthz"), vip),
        ] {
            match result {
                Ok(Some(200)) | Ok(None) => {}
                Ok(Some(status)) => {
                    tracing::debug!("VRRP_Script({check}): GET {url}: status {status}");
                    ok = false;
                }
                Err(e) => {
                    tracing::debug!("VRRP_Script({check}): GET {url}: {e}");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// Runs `spec` forever (until `tx` closes), starting healthy as keepalived does, and reports status
/// changes.
pub async fn run(spec: CheckSpec, target: IpAddr, tx: mpsc::UnboundedSender<CheckEvent>, metrics: CheckMetrics) {
    let mut ok = true;
    metrics.up.set(1);
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let passed = run_once(&spec, target).await;
        metrics.duration.observe(started.elapsed().as_secs_f64());
        if passed { &metrics.successes } else { &metrics.failures }.inc();
        if passed {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let now_ok = if ok {
            failures < spec.fall
        } else {
            successes >= spec.rise
        };
        if now_ok != ok {
            ok = now_ok;
            metrics.up.set(i64::from(ok));
            // keepalived's wording, which existing tooling greps for.
            if ok {
                tracing::info!("VRRP_Script({}) succeeded", spec.name);
            } else {
                tracing::info!("VRRP_Script({}) failed", spec.name);
            }
            if tx
                .send(CheckEvent {
                    name: spec.name.clone(),
                    ok,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// What the tracked checks mean for an instance: Fault (a failing weight-0 check), and its priority.
pub fn effect(configured: u8, tracked: &[(i32, bool)]) -> (bool, u8) {
    let fault = tracked.iter().any(|(w, ok)| *w == 0 && !ok);
    let delta: i32 = tracked
        .iter()
        .map(|(w, ok)| if (*w > 0 && *ok) || (*w < 0 && !ok) { *w } else { 0 })
        .sum();
    // The address owner keeps 255; others stay within 1..254 (keepalived's clamp).
    let priority = if configured == 255 {
        255
    } else {
        (i32::from(configured) + delta).clamp(1, 254) as u8
    };
    (fault, priority)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_and_names_bad_values() {
        let c: CheckSpec = "name=port,tcp=80,interval=2,fall=3,rise=2,weight=-20"
            .parse()
            .expect("valid");
        assert_eq!(
            (c.kind.clone(), c.fall, c.rise, c.weight, c.timeout),
            (CheckKind::Tcp(80), 3, 2, -20, Duration::from_secs(2))
        );
        let s: CheckSpec = "name=s,interval=1,script=test -f /a,b".parse().expect("valid");
        assert_eq!(s.kind, CheckKind::Script("test -f /a,b".into()));
        for (text, needle) in [
            ("name=x,tcp=0", "tcp=\"0\""),
            ("name=x,tcp=80,interval=-1", "interval=\"-1\""),
            ("name=x,tcp=80,fall=0", "fall=\"0\""),
            ("name=x,tcp=80,weight=300", "weight=\"300\""),
            ("tcp=80", "name="),
            ("name=x", "script= or tcp="),
        ] {
            let e = text.parse::<CheckSpec>().expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn weights_follow_keepalived() {
        assert_eq!(effect(100, &[]), (false, 100));
        assert_eq!(effect(100, &[(0, false)]), (true, 100));
        assert_eq!(effect(100, &[(-30, false), (10, true)]), (false, 80));
        assert_eq!(effect(100, &[(-30, true), (10, false)]), (false, 100));
        assert_eq!(effect(20, &[(-50, false)]), (false, 1));
        assert_eq!(effect(250, &[(20, true)]), (false, 254));
        assert_eq!(effect(255, &[(-50, false)]), (false, 255));
    }

    mod kube_apiserver {
        use std::{
            net::IpAddr,
            sync::{
                Arc,
                atomic::{AtomicUsize, Ordering},
            },
            time::{Duration, Instant},
        };

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_rustls::{
            TlsAcceptor,
            rustls::{
                self, ServerConfig,
                pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
            },
        };

        use super::super::*;

        /// An HTTPS server on 127.0.0.1 with a self-signed certificate that answers each request with
        /// the status `answer(host header)`, or never when that is `None`. Returns its port and a
        /// count of the requests it has read.
        async fn server(answer: fn(&str) -> Option<u16>) -> (u16, Arc<AtomicUsize>) {
            let rcgen::CertifiedKey { cert, signing_key } =
                rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
            let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)
                .expect("server certificate");
            let acceptor = TlsAcceptor::from(Arc::new(config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("local address").port();
            let requests = Arc::new(AtomicUsize::new(0));
            let counted = requests.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, counted) = (acceptor.clone(), counted.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut head = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&chunk[..n]),
                            }
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                        let host = head
                            .lines()
                            .find_map(|l| l.strip_prefix("host:"))
                            .map(str::trim)
                            .unwrap_or_default()
                            .to_owned();
                        match answer(&host) {
                            // 200 keeps the connection open as the API server does; the others
                            // close it, so both ways a client can see the answer are exercised.
                            Some(200) => {
                                let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                let _ = tls.write_all(reply.as_bytes()).await;
                                let _ = tls.flush().await;
                                std::future::pending::<()>().await
                            }
                            Some(status) => {
                                let reply =
                                    format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                                let _ = tls.write_all(reply.as_bytes()).await;
                                let _ = tls.shutdown().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    });
                }
            });
            (port, requests)
        }

        fn spec(address: &str, port: u16, timeout: Duration) -> CheckSpec {
            CheckSpec {
                name: "chk_kube_apiserver".into(),
                kind: CheckKind::KubeApiserver {
                    address: address.parse().expect("address"),
                    port,
                },
                interval: Duration::from_secs(3),
                timeout,
                rise: 1,
                fall: 1,
                weight: -50,
            }
        }

        /// Not this node's (TEST-NET-3): never queried, only localhost is.
        const ELSEWHERE: &str = "203.0.113.7";
        const TIMEOUT: Duration = Duration::from_secs(2);

        async fn check(address: &str, port: u16) -> bool {
            run_once(&spec(address, port, TIMEOUT), IpAddr::from([127, 0, 0, 1])).await
        }

        #[tokio::test]
        async fn healthy_on_200_from_localhost_and_the_held_address() {
            assert!(
                crate::config::host::local_addresses().contains(&IpAddr::from([127, 0, 0, 1])),
                "the test needs 127.0.0.1 on lo"
            );
            let (port, requests) = server(|_| Some(200)).await;
            assert!(check(ELSEWHERE, port).await);
            assert_eq!(
                requests.load(Ordering::SeqCst),
                1,
                "only localhost while not holding the address"
            );
            // 127.0.0.1 is on lo: this node holds it, so it is queried too.
            assert!(check("127.0.0.1", port).await);
            assert_eq!(requests.load(Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn failing_on_any_other_status() {
            let (port, _) = server(|_| Some(500)).await;
            assert!(!check(ELSEWHERE, port).await);
            // localhost answers 200, the held address 503: failing; not held: only localhost counts.
            let (port, _) = server(|host| Some(if host.starts_with("localhost:") { 200 } else { 503 })).await;
            assert!(!check("127.0.0.1", port).await);
            assert!(check(ELSEWHERE, port).await);
        }

        #[tokio::test]
        async fn failing_within_the_timeout_when_nobody_answers() {
            let (port, requests) = server(|_| None).await;
            let timeout = Duration::from_millis(300);
            let started = Instant::now();
            assert!(!run_once(&spec(ELSEWHERE, port, timeout), IpAddr::from([127, 0, 0, 1])).await);
            let took = started.elapsed();
            assert!(took >= timeout && took < timeout + Duration::from_secs(1), "{took:?}");
            assert_eq!(requests.load(Ordering::SeqCst), 1, "the request reached the server");
        }

        #[tokio::test]
        async fn failing_when_nothing_listens() {
            let port = {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                l.local_addr().expect("local address").port()
            };
            assert!(!check(ELSEWHERE, port).await);
        }
    }
}
