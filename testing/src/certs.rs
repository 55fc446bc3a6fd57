//! Certificates made for a test: an authority, a server certificate for
//! `localhost` and `127.0.0.1`, and client certificates naming principals,
//! written as PEM files in a directory of their own.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A test certificate authority and what it signed, as files.
pub struct TestCerts {
    dir: tempfile::TempDir,
    authority: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCerts {
    /// A new authority, named `name`.
    ///
    /// # Panics
    /// When a key cannot be made or a file written: a broken test machine.
    pub fn new(name: &str) -> TestCerts {
        let dir = tempfile::tempdir().expect("a directory for certificates");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let authority = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a self-signed authority");
        std::fs::write(dir.path().join("ca.pem"), authority.pem()).expect("writing ca.pem");
        TestCerts { dir, authority }
    }

    /// The authority's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> CertFiles {
        self.server_for(&["localhost", "127.0.0.1"])
    }

    /// A server certificate for `names` only (host names or addresses).
    pub fn server_for(&self, names: &[&str]) -> CertFiles {
        self.issue(
            &format!("server-{}", names.join("-")),
            names[0],
            names,
            true,
        )
    }

    /// A client certificate whose subject's common name is `principal`.
    pub fn client(&self, principal: &str) -> CertFiles {
        self.issue(&format!("client-{principal}"), principal, &[], false)
    }

    fn issue(&self, file: &str, common_name: &str, names: &[&str], server: bool) -> CertFiles {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.authority)
            .expect("a signed certificate");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing a key");
        files
    }
}
