//! The server's TLS (rustls): one port for gRPC (HTTP/2) and for HTTP/1.1
//! clients of the HTTP/JSON API, so both protocols are offered in ALPN.
//! Handshakes run beside the accept loop, each bounded in time, so a slow
//! or silent client delays no one else.

use std::{io, sync::Arc, time::Duration};

use anyhow::Context;
use futures::{Stream, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::TcpStream,
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier},
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at once; past it, accepting waits.
const MAX_HANDSHAKES: usize = 256;

/// The server's certificate and key, and the authorities whose client
/// certificates it accepts (if any).
#[derive(Clone, Debug)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    client_auth_optional: bool,
}

impl ServerTls {
    /// TLS with this certificate chain and private key (PEM).
    pub fn new(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        ServerTls {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
            client_auth_optional: false,
        }
    }

    /// Verifies client certificates against these authorities (PEM).
    pub fn client_ca_root(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }

    /// Lets clients connect without a certificate (those that send one are
    /// still verified).
    pub fn client_auth_optional(mut self, optional: bool) -> Self {
        self.client_auth_optional = optional;
        self
    }

    /// The acceptor, offering `h2` and `http/1.1`.
    ///
    /// # Errors
    /// When the certificate, key or authorities do not parse or fit.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("reading tls_cert")?;
        anyhow::ensure!(!chain.is_empty(), "tls_cert holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).context("reading tls_key")?;
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots
                        .add(cert.context("reading tls_client_ca")?)
                        .context("tls_client_ca: not a usable authority")?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
                let verifier = if self.client_auth_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .context("tls_client_ca: no usable authority")?,
                )
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .context("tls_cert and tls_key do not make a certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The connections of `tcp` once their handshakes succeed, until `stop`.
pub(crate) fn incoming<S>(
    tcp: S,
    acceptor: TlsAcceptor,
    stop: CancellationToken,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, io::Error>>
where
    S: Stream<Item = Result<TcpStream, io::Error>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        let mut tcp = std::pin::pin!(tcp);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                next = tcp.next() => next,
            };
            let stream = match next {
                None => return,
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "accepting a connection failed");
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
