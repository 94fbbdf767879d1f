//! Alipay public-key-certificate mode: the three certificates a merchant downloads
//! (`appCertPublicKey_<app_id>.crt`, `alipayCertPublicKey_RSA2.crt`, `alipayRootCert.crt`),
//! read once at construction into the SNs the wire carries and the Alipay public key.
//!
//! **SN** (Alipay's name for it; not the X.509 serial): `md5_hex(issuer DN + decimal serial)`,
//! 32 lowercase hex digits, where the issuer DN is what Java's
//! `X509Certificate.getIssuerX500Principal().getName()` returns — the official Java SDK's
//! `AntCertificationUtil` computes it that way and the gateway compares against it. That
//! string is RFC 2253 (§2.1–2.4) as the JDK implements it ([`issuer_dn`]):
//!
//! * RDNs in reverse encoding order (most specific first), joined with `,`; the attributes of
//!   a multi-valued RDN in encoding order, joined with `+`;
//! * attribute types `CN`, `C`, `L`, `ST`, `O`, `OU`, `STREET`, `DC`, `UID` (the RFC 2253
//!   keywords); any other type as its dotted OID, e.g. `1.2.840.113549.1.9.1` for an e-mail
//!   address;
//! * a value of a keyword type held as PrintableString, TeletexString, IA5String,
//!   GeneralString, BMPString or UTF8String: its content bytes read as UTF-8 (the JDK does
//!   this for every one of these types; invalid sequences become U+FFFD), with a backslash
//!   before each of `, = + < > # ; " \`, `\00` for NUL, and a backslash before each leading
//!   or trailing space or CR;
//! * every other value (and every value of a dotted-OID type): `#` and the lowercase hex of
//!   its whole DER encoding.
//!
//! The serial is Java's `BigInteger.toString()`: decimal, with a `-` for the (non-conforming
//! but seen) negative two's-complement serials. Alipay's real certificates only use
//! `CN, OU, O, C` with plain PrintableString/UTF8String values, for which every SDK (Java,
//! PHP, Node, python-alipay-sdk) and `openssl x509 -nameopt RFC2253` agree; the rules above
//! only decide the exotic cases, where the SDKs disagree among themselves and Java wins.
//!
//! **Root SN**: the SNs of the certificates in the root bundle whose signature algorithm OID
//! starts with `1.2.840.113549.1.1` (the RSA family; the bundle also holds an SM2 root),
//! joined with `_` in bundle order. The test is the Java SDK's string prefix test on the
//! dotted OID.
//!
//! The certificate chain is not verified here (the SDKs do not either when they start);
//! validity dates are not checked (no wall clock outside `determinism`, and Alipay itself
//! judges the app certificate by its SN).

use base64::Engine as _;
use md5::{Digest as _, Md5};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, Class, Tag, ToDer as _};
use x509_parser::num_bigint::BigUint;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::sign::{AlipayPublicKey, AppPrivateKey, BASE64};
use super::AlipayCertificates;
use crate::channel::AdapterError;

/// `rsaEncryption`, the SubjectPublicKeyInfo algorithm of an RSA key.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// The signature algorithms that count for the root SN (`sha1WithRSAEncryption`,
/// `sha256WithRSAEncryption` …), compared as a string prefix like the Java SDK does.
const RSA_FAMILY_PREFIX: &str = "1.2.840.113549.1.1";

/// The SNs certificate mode puts on the wire, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CertificateMode {
    /// SN of the app certificate: the `app_cert_sn` request parameter.
    pub app_cert_sn: String,
    /// SN of the Alipay certificate: what a response's `alipay_cert_sn` must say.
    pub alipay_cert_sn: String,
    /// SNs of the RSA roots joined with `_`: the `alipay_root_cert_sn` request parameter.
    pub alipay_root_cert_sn: String,
}

impl CertificateMode {
    /// Reads the three certificates: computes the SNs, checks that the app certificate
    /// certifies `app_key`'s public key, and returns the Alipay certificate's public key.
    pub(super) fn load(
        certificates: &AlipayCertificates,
        app_key: &AppPrivateKey,
    ) -> Result<(Self, AlipayPublicKey), AdapterError> {
        let app_der = first_certificate("alipay app certificate", &certificates.app_cert_pem)?;
        let app = parse("alipay app certificate", &app_der)?;
        let app_spki = app.public_key();
        if app_spki.algorithm.algorithm.to_id_string() != RSA_ENCRYPTION {
            return Err(AdapterError::Invalid(
                "alipay app certificate: its public key is not an RSA key".into(),
            ));
        }
        let certified = aws_lc_rs::rsa::PublicKey::from_der(app_spki.raw).map_err(|error| {
            AdapterError::Invalid(format!("alipay app certificate public key: {error}"))
        })?;
        if certified.as_ref() != app_key.public_key_der() {
            return Err(AdapterError::Invalid(
                "alipay app certificate does not match the app private key: the certificate \
                 certifies another public key (wrong appCertPublicKey file, or the key pair was \
                 renewed without re-issuing the certificate)"
                    .into(),
            ));
        }
        let app_cert_sn = cert_sn(&app).map_err(|why| invalid("alipay app certificate", &why))?;

        let alipay_der = first_certificate("alipay certificate", &certificates.alipay_cert_pem)?;
        let alipay = parse("alipay certificate", &alipay_der)?;
        let alipay_public_key = AlipayPublicKey::from_spki_der(alipay.public_key().raw)?;
        let alipay_cert_sn = cert_sn(&alipay).map_err(|why| invalid("alipay certificate", &why))?;

        let alipay_root_cert_sn = root_cert_sn(&certificates.alipay_root_cert_pem)?;
        Ok((
            CertificateMode {
                app_cert_sn,
                alipay_cert_sn,
                alipay_root_cert_sn,
            },
            alipay_public_key,
        ))
    }
}

/// The root SN of a PEM bundle: the SNs of its RSA-family certificates joined with `_`.
fn root_cert_sn(bundle: &str) -> Result<String, AdapterError> {
    const WHAT: &str = "alipay root certificate bundle";
    let blocks = certificates(bundle).map_err(|why| invalid(WHAT, &why))?;
    if blocks.is_empty() {
        return Err(invalid(WHAT, "no -----BEGIN CERTIFICATE----- block"));
    }
    let mut sns = Vec::new();
    for (index, der) in blocks.iter().enumerate() {
        let what = format!("{WHAT}, certificate {}", index + 1);
        let certificate = parse(&what, der)?;
        if certificate
            .signature_algorithm
            .algorithm
            .to_id_string()
            .starts_with(RSA_FAMILY_PREFIX)
        {
            sns.push(cert_sn(&certificate).map_err(|why| invalid(&what, &why))?);
        }
    }
    if sns.is_empty() {
        return Err(invalid(WHAT, "no RSA-signed certificate in the bundle"));
    }
    Ok(sns.join("_"))
}

/// `md5_hex(issuer DN + decimal serial)`.
fn cert_sn(certificate: &X509Certificate<'_>) -> Result<String, String> {
    let mut text = issuer_dn(certificate.issuer())?;
    text.push_str(&serial_decimal(certificate.raw_serial()));
    Ok(hex::encode(Md5::digest(text.as_bytes())))
}

/// The issuer DN as Java's `X500Principal.getName()` (RFC 2253) renders it; see the module
/// documentation.
fn issuer_dn(name: &X509Name<'_>) -> Result<String, String> {
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let attributes = rdn
            .iter()
            .map(attribute_rfc2253)
            .collect::<Result<Vec<_>, _>>()?;
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn attribute_rfc2253(attribute: &AttributeTypeAndValue<'_>) -> Result<String, String> {
    let oid = attribute.attr_type().to_id_string();
    let value = attribute.attr_value();
    match rfc2253_keyword(&oid) {
        Some(keyword) if is_directory_string(value) => Ok(format!(
            "{keyword}={}",
            escape_value(&String::from_utf8_lossy(value.data))
        )),
        Some(keyword) => Ok(format!("{keyword}=#{}", der_hex(value)?)),
        None => Ok(format!("{oid}=#{}", der_hex(value)?)),
    }
}

/// The attribute type keywords RFC 2253 §2.3 defines (the only ones the JDK uses there).
fn rfc2253_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The universal string types the JDK renders as text.
fn is_directory_string(value: &Any<'_>) -> bool {
    value.class() == Class::Universal
        && !value.header.is_constructed()
        && matches!(
            value.tag(),
            Tag::PrintableString
                | Tag::T61String
                | Tag::Ia5String
                | Tag::GeneralString
                | Tag::BmpString
                | Tag::Utf8String
        )
}

fn der_hex(value: &Any<'_>) -> Result<String, String> {
    value
        .to_der_vec()
        .map(hex::encode)
        .map_err(|error| format!("issuer attribute value: {error}"))
}

/// RFC 2253 §2.4 escaping as the JDK does it: `\` before `, = + < > # ; " \` anywhere,
/// `\00` for NUL, then `\` before every leading and trailing space or CR.
fn escape_value(value: &str) -> String {
    let mut chars = Vec::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => chars.extend(['\\', c]),
            '\0' => chars.extend(['\\', '0', '0']),
            _ => chars.push(c),
        }
    }
    let blank = |c: &&char| matches!(c, ' ' | '\r');
    let leading = chars.iter().take_while(blank).count();
    let trailing_from = chars
        .len()
        .saturating_sub(chars.iter().rev().take_while(blank).count());
    let mut escaped = String::with_capacity(chars.len() + 2);
    for (index, c) in chars.into_iter().enumerate() {
        if index < leading || index >= trailing_from {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The serial (the DER INTEGER's content bytes) in decimal, as Java's `BigInteger`.
fn serial_decimal(raw: &[u8]) -> String {
    match raw.first() {
        Some(first) if first & 0x80 != 0 => {
            // Negative two's complement: the magnitude is the bitwise complement plus one.
            let mut magnitude: Vec<u8> = raw.iter().map(|byte| !byte).collect();
            for byte in magnitude.iter_mut().rev() {
                let (sum, carry) = byte.overflowing_add(1);
                *byte = sum;
                if !carry {
                    break;
                }
            }
            format!("-{}", BigUint::from_bytes_be(&magnitude))
        }
        _ => BigUint::from_bytes_be(raw).to_string(),
    }
}

fn parse<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, AdapterError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, certificate)| certificate)
        .map_err(|error| invalid(what, &format!("not an X.509 certificate: {error}")))
}

/// The first certificate of a PEM file (an Alipay certificate file may carry its chain after
/// it; like the SDKs, the first one is the certificate).
fn first_certificate(what: &str, text: &str) -> Result<Vec<u8>, AdapterError> {
    certificates(text)
        .map_err(|why| invalid(what, &why))?
        .into_iter()
        .next()
        .ok_or_else(|| invalid(what, "no -----BEGIN CERTIFICATE----- block"))
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order. Lines are trimmed (pasted
/// certificates), text outside blocks is ignored, any other block label is refused.
fn certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        match open.as_mut() {
            None => {
                if let Some(label) = pem_boundary(line, "BEGIN") {
                    if label != "CERTIFICATE" {
                        return Err(format!("unexpected PEM block {label:?}"));
                    }
                    open = Some(String::new());
                }
            }
            Some(body) => {
                if let Some(label) = pem_boundary(line, "END") {
                    if label != "CERTIFICATE" {
                        return Err(format!("PEM block ends with {label:?}"));
                    }
                    let der = BASE64
                        .decode(body.as_bytes())
                        .map_err(|_| "bad base64 in a CERTIFICATE block".to_owned())?;
                    blocks.push(der);
                    open = None;
                } else if line.starts_with("-----") {
                    return Err("unterminated CERTIFICATE block".to_owned());
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if open.is_some() {
        return Err("unterminated CERTIFICATE block".to_owned());
    }
    Ok(blocks)
}

/// `-----BEGIN LABEL-----` → `Some("LABEL")`.
fn pem_boundary<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_suffix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')
}

fn invalid(what: &str, why: &str) -> AdapterError {
    AdapterError::Invalid(format!("{what}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer as _;

    macro_rules! vector {
        ($file:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scenarios/vectors/alipay/",
                $file
            ))
        };
    }

    const ROOT_BUNDLE: &str = vector!("certs/alipay_root_cert.crt");
    const ALIPAY_CERT: &str = vector!("certs/alipay_cert_public_key_rsa2.crt");
    const APP_CERT: &str = vector!("certs/app_cert_public_key_2021000000000001.crt");
    const CERT_SNS: &str = vector!("cert_sns.json");

    fn expected(key: &str) -> String {
        let sns: serde_json::Value = serde_json::from_str(CERT_SNS).unwrap();
        sns[key].as_str().unwrap().to_owned()
    }

    fn sn_of(pem_text: &str) -> String {
        let der = first_certificate("test", pem_text).unwrap();
        cert_sn(&parse("test", &der).unwrap()).unwrap()
    }

    #[test]
    fn sns_equal_the_openssl_vectors() {
        assert_eq!(sn_of(APP_CERT), expected("app_cert_sn"));
        assert_eq!(sn_of(ALIPAY_CERT), expected("alipay_cert_sn"));
        assert_eq!(
            root_cert_sn(ROOT_BUNDLE).unwrap(),
            expected("alipay_root_cert_sn")
        );
    }

    #[test]
    fn dn_is_rfc2253_order_and_the_ec_root_is_skipped() {
        let blocks = certificates(ROOT_BUNDLE).unwrap();
        assert_eq!(blocks.len(), 2, "an RSA root then an EC root");
        let rsa_root = parse("rsa", &blocks[0]).unwrap();
        assert_eq!(
            issuer_dn(rsa_root.issuer()).unwrap(),
            "CN=paysim Alipay Test Root CA,OU=Alipay Test,O=paysim,C=CN"
        );
        assert_eq!(serial_decimal(rsa_root.raw_serial()), "1001");
        // The root SN is the RSA root's SN alone: the EC root does not count.
        assert_eq!(
            root_cert_sn(ROOT_BUNDLE).unwrap(),
            cert_sn(&rsa_root).unwrap()
        );
        assert_eq!(
            hex::encode(Md5::digest(
                "CN=paysim Alipay Test Root CA,OU=Alipay Test,O=paysim,C=CN1001"
            )),
            expected("alipay_root_cert_sn")
        );
        // Order in the bundle is kept, the EC root wherever it sits is skipped.
        let pems: Vec<&str> = ROOT_BUNDLE
            .split_inclusive("-----END CERTIFICATE-----")
            .filter(|part| part.contains("BEGIN"))
            .collect();
        assert_eq!(pems.len(), 2);
        let twice = format!("{}\n{}\n{}", pems[1], pems[0], pems[0]);
        let root = expected("alipay_root_cert_sn");
        assert_eq!(root_cert_sn(&twice).unwrap(), format!("{root}_{root}"));
        assert!(matches!(
            root_cert_sn(pems[1]),
            Err(AdapterError::Invalid(why)) if why.contains("no RSA-signed certificate")
        ));
    }

    #[test]
    fn serials_print_like_java_biginteger() {
        assert_eq!(serial_decimal(&[0x03, 0xe9]), "1001");
        assert_eq!(serial_decimal(&[0x00, 0xff]), "255");
        assert_eq!(serial_decimal(&[0xff]), "-1");
        assert_eq!(serial_decimal(&[0x80]), "-128");
        assert_eq!(serial_decimal(&[0xff, 0x00]), "-256");
        assert_eq!(
            serial_decimal(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            "340282366920938463463374607431768211456"
        );
    }

    #[test]
    fn values_are_escaped_like_the_jdk() {
        assert_eq!(escape_value("Ant Financial"), "Ant Financial");
        assert_eq!(
            escape_value("a,b=c+d<e>f#g;h\"i\\j"),
            r#"a\,b\=c\+d\<e\>f\#g\;h\"i\\j"#
        );
        assert_eq!(escape_value("#lead"), r"\#lead");
        assert_eq!(escape_value("  x  "), r"\ \ x\ \ ");
        assert_eq!(escape_value("\rx"), "\\\rx");
        assert_eq!(escape_value("   "), r"\ \ \ ");
        assert_eq!(escape_value("a\0b"), r"a\00b");
        assert_eq!(escape_value("中文 名"), "中文 名");
        assert_eq!(escape_value(""), "");
    }

    // DER building blocks for hand-made names.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let length = u8::try_from(content.len()).unwrap();
        let mut out = if length < 0x80 {
            vec![tag, length]
        } else {
            vec![tag, 0x81, length]
        };
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], value_tag: u8, value: &[u8]) -> Vec<u8> {
        let mut sequence = tlv(0x06, oid);
        sequence.extend(tlv(value_tag, value));
        tlv(0x30, &sequence)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
    const PRINTABLE: u8 = 0x13;
    const UTF8: u8 = 0x0c;
    const IA5: u8 = 0x16;
    const NUMERIC: u8 = 0x12;

    fn dn_of(rdns: &[Vec<Vec<u8>>]) -> String {
        let mut content = Vec::new();
        for rdn in rdns {
            content.extend(tlv(0x31, &rdn.concat()));
        }
        let der = tlv(0x30, &content);
        let (rest, name) = X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        issuer_dn(&name).unwrap()
    }

    #[test]
    fn attribute_types_and_value_types_render_like_the_jdk() {
        // Real Alipay issuers: C, O, OU, CN → reversed, keywords, plain values.
        assert_eq!(
            dn_of(&[
                vec![attribute(C, PRINTABLE, b"CN")],
                vec![attribute(O, UTF8, b"Ant Financial")],
                vec![attribute(OU, UTF8, b"Certification Authority")],
                vec![attribute(CN, UTF8, b"Ant Financial Certification Authority Class 2 R1")],
            ]),
            "CN=Ant Financial Certification Authority Class 2 R1,OU=Certification Authority,O=Ant Financial,C=CN"
        );
        // Special characters are escaped; UTF-8 stays as is.
        assert_eq!(
            dn_of(&[
                vec![attribute(C, PRINTABLE, b"CN")],
                vec![attribute(O, UTF8, "蚂蚁, Inc.".as_bytes())],
            ]),
            r"O=蚂蚁\, Inc.,C=CN"
        );
        // No RFC 2253 keyword (e-mail): dotted OID and the hex of the value's DER.
        assert_eq!(
            dn_of(&[
                vec![attribute(C, PRINTABLE, b"CN")],
                vec![attribute(EMAIL, IA5, b"a@b")],
            ]),
            "1.2.840.113549.1.9.1=#1603614062,C=CN"
        );
        // A keyword type with a value type the JDK does not render as text.
        assert_eq!(
            dn_of(&[vec![attribute(CN, NUMERIC, b"12")]]),
            "CN=#12023132"
        );
        // A multi-valued RDN keeps its encoding order, joined with `+`.
        assert_eq!(
            dn_of(&[
                vec![attribute(C, PRINTABLE, b"CN")],
                vec![attribute(OU, UTF8, b"b"), attribute(CN, UTF8, b"a")],
            ]),
            "OU=b+CN=a,C=CN"
        );
    }

    #[test]
    fn pem_text_is_read_leniently_but_not_blindly() {
        let indented: String = APP_CERT
            .lines()
            .map(|line| format!("   {line}\r\n"))
            .collect();
        assert_eq!(sn_of(&indented), expected("app_cert_sn"));
        // A chain file: the first certificate is the certificate.
        let chain = format!("{ALIPAY_CERT}\n{ROOT_BUNDLE}");
        assert_eq!(sn_of(&chain), expected("alipay_cert_sn"));
        for junk in [
            "",
            "no pem here",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nAAAA",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            assert!(
                matches!(
                    first_certificate("x", junk).and_then(|der| parse("x", &der).map(|_| ())),
                    Err(AdapterError::Invalid(_))
                ),
                "{junk:?}"
            );
        }
    }
}
