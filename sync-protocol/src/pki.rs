//! The fleet's identities: central's own certificate authority, central's
//! server certificate, a site's key and signing request, and the
//! enrollment token that carries the fingerprint of central's CA.
//!
//! Names are fixed, not addresses: central's certificate names
//! [`CENTRAL_NAME`] whatever address a site dials, and a site's certificate
//! is only good for client authentication, so no site can pose as central
//! to another. Central recognises a site by its certificate's SHA-256, not
//! by a name inside it.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// The server name in central's certificate, used by every site as SNI.
pub const CENTRAL_NAME: &str = "printfleet-central";

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused (bad PEM, a signing request with a bad signature, ...).
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate could not be read.
    #[error("not a PEM certificate")]
    NotPem,
}

/// A key pair and a certificate, both PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl Identity {
    /// Certificate and key in one PEM text (keep it 0600).
    pub fn to_pem(&self) -> String {
        format!("{}{}", self.certificate_pem, self.key_pem)
    }

    /// Splits a PEM text holding a certificate and then a private key.
    pub fn from_pem(pem: &str) -> Option<Identity> {
        let start = pem.find("-----BEGIN PRIVATE KEY-----")?;
        let (certificate, key) = pem.split_at(start);
        (certificate.contains("-----BEGIN CERTIFICATE-----")).then(|| Identity {
            certificate_pem: certificate.to_owned(),
            key_pem: key.to_owned(),
        })
    }
}

/// Central's certificate authority: signs central's server certificate and
/// every site's certificate.
pub struct Authority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
    // An hour of slack for clocks a little behind.
    params.not_before = now - std::time::Duration::from_secs(3600);
    params.not_after = now + std::time::Duration::from_secs(days.max(1) as u64 * 86_400);
}

impl Authority {
    /// A new authority for the fleet named `fleet`, valid 20 years.
    pub fn create(fleet: &str) -> Result<(Authority, Identity), PkiError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{fleet} print fleet CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 20 * 365);
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let identity = Identity {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        };
        let authority = Authority::load(&identity)?;
        Ok((authority, identity))
    }

    /// The authority saved as `identity`.
    pub fn load(identity: &Identity) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(&identity.key_pem)?;
        Ok(Authority {
            issuer: Issuer::from_ca_cert_pem(&identity.certificate_pem, key)?,
            certificate_pem: identity.certificate_pem.clone(),
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// SHA-256 of the CA certificate: what enrollment tokens pin.
    pub fn fingerprint(&self) -> Result<[u8; 32], PkiError> {
        pem_fingerprint(&self.certificate_pem)
    }

    /// A new server certificate for central, valid `days` days. It serves
    /// for client authentication too: a node proves itself with it to the
    /// other nodes of the fleet (`transport::node_client_config`).
    pub fn server_identity(&self, days: i64) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(vec![CENTRAL_NAME.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, CENTRAL_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a site's request: the certificate carries the request's public
    /// key and nothing else the site asked for (its name is `site`, its use
    /// client authentication only), valid `days` days.
    pub fn sign_site(&self, csr_pem: &str, site: &str, days: i64) -> Result<String, PkiError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, site);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        };
        Ok(signed.signed_by(&self.issuer)?.pem())
    }
}

impl Authority {
    /// A site certificate whose validity ended yesterday, for the tests of
    /// what an expired site meets.
    #[cfg(test)]
    pub(crate) fn sign_site_expired(&self, csr_pem: &str, site: &str) -> Result<String, PkiError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, site);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 1);
        params.not_after = params.not_before - std::time::Duration::from_secs(86_400);
        params.not_before = params.not_after - std::time::Duration::from_secs(86_400);
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        };
        Ok(signed.signed_by(&self.issuer)?.pem())
    }
}

/// A site's new key pair and its signing request (PEM). The key never
/// leaves the site.
pub fn site_request() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "printfleet-site");
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// SHA-256 of a DER certificate.
pub fn der_fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// SHA-256 of the first certificate in `pem`.
pub fn pem_fingerprint(pem: &str) -> Result<[u8; 32], PkiError> {
    let der = certificates_der(pem)?;
    der.first()
        .map(|d| der_fingerprint(d))
        .ok_or(PkiError::NotPem)
}

/// Every certificate in `pem`, DER.
pub fn certificates_der(pem: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()).map_err(|_| PkiError::NotPem))
        .collect()
}

/// An enrollment token as `central site add` prints it:
/// `<id>.<secret>.<CA fingerprint>`, all hex. The id finds the token at
/// central, the secret proves it (central keeps only its SHA-256), the
/// fingerprint lets the site trust central before it has central's CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Finds the token at central (8 bytes, hex).
    pub id: String,
    /// Proves it (16 bytes, hex).
    pub secret: String,
    /// SHA-256 of central's CA certificate.
    pub ca_fingerprint: [u8; 32],
}

impl EnrollmentToken {
    /// Parses a token as printed; `None` if it is not one.
    pub fn parse(token: &str) -> Option<EnrollmentToken> {
        let mut parts = token.trim().split('.');
        let (id, secret, pin) = (parts.next()?, parts.next()?, parts.next()?);
        let hex_of = |s: &str, len: usize| {
            (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_owned())
        };
        let mut ca_fingerprint = [0; 32];
        hex::decode_to_slice(pin, &mut ca_fingerprint).ok()?;
        (parts.next().is_none()).then_some(())?;
        Some(EnrollmentToken {
            id: hex_of(id, 16)?.to_ascii_lowercase(),
            secret: hex_of(secret, 32)?.to_ascii_lowercase(),
            ca_fingerprint,
        })
    }

    /// SHA-256 of the secret, as central keeps it.
    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

impl std::fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.id,
            self.secret,
            hex::encode(self.ca_fingerprint)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_print_and_parse_and_junk_is_refused() {
        let token = EnrollmentToken {
            id: "0123456789abcdef".into(),
            secret: "00112233445566778899aabbccddeeff".into(),
            ca_fingerprint: [7; 32],
        };
        let printed = token.to_string();
        assert_eq!(
            EnrollmentToken::parse(&format!(" {printed}\n")),
            Some(token)
        );
        for bad in [
            "",
            "a.b.c",
            &printed[1..],
            &format!("{printed}.x"),
            &printed.replace('a', "g"),
        ] {
            assert_eq!(EnrollmentToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_site_certificate_carries_the_requests_key_and_only_client_use() {
        let (ca, _) = Authority::create("test").unwrap();
        let (_key, csr) = site_request().unwrap();
        let cert = ca.sign_site(&csr, "branch-1", 30).unwrap();
        assert_eq!(certificates_der(&cert).unwrap().len(), 1);
        assert!(
            ca.sign_site(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                "x",
                1
            )
            .is_err()
        );
        assert_ne!(ca.fingerprint().unwrap(), pem_fingerprint(&cert).unwrap());
    }
}
