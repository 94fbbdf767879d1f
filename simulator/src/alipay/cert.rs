//! Public-key-certificate mode (notes A1.3): X.509 parsing with x509-parser, and Alipay's
//! certificate SN, written here from the notes: `md5_hex(issuer DN + decimal serial)`, the
//! issuer DN as an RFC 2253 string (RDNs in reverse encoded order, `CN=…,OU=…,O=…,C=CN`,
//! RFC 2253 escaping), the serial as a signed decimal. The root SN joins the SNs of the
//! bundle's certificates signed with an RSA-family algorithm (`1.2.840.113549.1.1.*`) with `_`.

use md5::{Digest as _, Md5};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, Class, Length, Tag};
use x509_parser::pem::Pem;
use x509_parser::x509::X509Name;

use super::keys::VerifyingKey;
use crate::SimulatorError;

/// Signature algorithms whose OID starts with this count towards the root SN (RSA family).
const RSA_SIGNATURE_OID_PREFIX: &str = "1.2.840.113549.1.1";

/// What the mock keeps of one certificate.
#[derive(Debug, Clone)]
pub(super) struct CertInfo {
    pub sn: String,
    pub public_key: VerifyingKey,
}

/// Parses the first certificate of `text` (PEM, or a bare base64 DER body): its SN and its
/// RSA public key.
pub(super) fn parse_cert(text: &str, what: &str) -> Result<CertInfo, SimulatorError> {
    with_first_cert(text, what, |cert| {
        Ok(CertInfo {
            sn: sn_of(cert),
            public_key: VerifyingKey::from_spki_der(cert.public_key().raw, what)?,
        })
    })
}

/// Alipay's SN of the first certificate in `pem` (PEM or bare base64 DER), whatever its key.
pub fn cert_sn(pem: &str) -> Result<String, SimulatorError> {
    with_first_cert(pem, "certificate", |cert| Ok(sn_of(cert)))
}

fn with_first_cert<T>(
    text: &str,
    what: &str,
    read: impl FnOnce(&X509Certificate<'_>) -> Result<T, SimulatorError>,
) -> Result<T, SimulatorError> {
    let invalid = |reason: String| SimulatorError::InvalidKey {
        what: what.to_owned(),
        reason,
    };
    let ders = decode_certificates(text).map_err(invalid)?;
    let der = ders
        .first()
        .ok_or_else(|| invalid("no certificate found".into()))?;
    let cert = parse_der(der).map_err(invalid)?;
    read(&cert)
}

/// Alipay's SN of a root bundle: the SNs of its RSA-signed certificates, in file order,
/// joined with `_`. A bundle without any RSA-signed certificate is refused.
pub fn root_cert_sn(pem_bundle: &str) -> Result<String, SimulatorError> {
    let invalid = |reason: String| SimulatorError::InvalidKey {
        what: "alipay root certificate bundle".to_owned(),
        reason,
    };
    let mut sns: Vec<String> = Vec::new();
    for der in decode_certificates(pem_bundle).map_err(invalid)? {
        let cert = parse_der(&der).map_err(invalid)?;
        if cert
            .signature_algorithm
            .algorithm
            .to_id_string()
            .starts_with(RSA_SIGNATURE_OID_PREFIX)
        {
            sns.push(sn_of(&cert));
        }
    }
    if sns.is_empty() {
        return Err(invalid("no RSA-signed certificate in the bundle".into()));
    }
    Ok(sns.join("_"))
}

/// Every `CERTIFICATE` block of a PEM text, or the single DER of a bare base64 body.
fn decode_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let trimmed = text.trim();
    if !trimmed.contains("-----BEGIN") {
        use base64::Engine as _;
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(|der| vec![der])
            .map_err(|e| format!("neither PEM nor base64: {e}"));
    }
    // x509-parser's reader wants each marker at the start of a line.
    let normalised: String = trimmed
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n");
    let mut ders = Vec::new();
    for block in Pem::iter_from_buffer(normalised.as_bytes()) {
        let pem = block.map_err(|e| format!("invalid PEM: {e}"))?;
        if pem.label == "CERTIFICATE" || pem.label == "X509 CERTIFICATE" {
            ders.push(pem.contents);
        }
    }
    if ders.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(ders)
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("not an X.509 certificate: {e}")),
    }
}

/// `md5_hex(issuer RFC 2253 DN + decimal serial)`, 32 lowercase hex digits.
fn sn_of(cert: &X509Certificate<'_>) -> String {
    let text = format!(
        "{}{}",
        rfc2253(cert.issuer()),
        signed_decimal(cert.raw_serial())
    );
    hex(&Md5::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The RFC 2253 string of a name: RDNs last-encoded first, joined by `,`; the attributes of a
/// multi-valued RDN joined by `+`.
pub(super) fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| attribute(&atv.attr_type().to_id_string(), atv.attr_value()))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `KEYWORD=escaped string` for the RFC 2253 keywords, `dotted.oid=#hex-of-BER` otherwise
/// (and for values that are not strings), RFC 2253 §2.3–2.4.
fn attribute(oid: &str, value: &Any<'_>) -> String {
    let keyword = match oid {
        "2.5.4.3" => Some("CN"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.6" => Some("C"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    match (keyword, decode_string(value)) {
        (Some(keyword), Some(text)) => format!("{keyword}={}", escape(&text)),
        _ => format!("{oid}=#{}", hex(&der_of(value))),
    }
}

/// The text of the directory-string types; None for anything else.
fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.header.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let data = value.data;
    match value.header.tag() {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        Tag(12) | Tag(18) | Tag(19) | Tag(22) | Tag(26) => {
            std::str::from_utf8(data).ok().map(str::to_owned)
        }
        // TeletexString: read as Latin-1, as most implementations do.
        Tag(20) => Some(data.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        Tag(30) => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|pair| match pair {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => 0,
                })
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        Tag(28) => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|quad| match quad {
                    [a, b, c, d] => char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// RFC 2253 §2.4: `,` `+` `"` `\` `<` `>` `;` escaped with a backslash, as are a leading `#`
/// or space and a trailing space; control characters become `\XX`. Other characters,
/// non-ASCII included, are kept as they are (as Java's `X500Principal.getName()` does).
fn escape(text: &str) -> String {
    let count = text.chars().count();
    let mut out = String::with_capacity(text.len());
    for (index, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (c == '#' || c == ' '))
            || (index + 1 == count && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() {
            out.push_str(&format!("\\{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The DER encoding (identifier, length, contents) of a parsed value, for the `#hex` form.
fn der_of(value: &Any<'_>) -> Vec<u8> {
    let header = &value.header;
    let class_bits: u8 = match header.class() {
        Class::Universal => 0x00,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xC0,
    };
    let constructed: u8 = if header.is_constructed() { 0x20 } else { 0 };
    let mut out = Vec::with_capacity(value.data.len() + 8);
    let tag = header.tag().0;
    match u8::try_from(tag) {
        Ok(low) if low < 31 => out.push(class_bits | constructed | low),
        _ => {
            out.push(class_bits | constructed | 0x1F);
            let mut groups = Vec::new();
            let mut rest = tag;
            loop {
                groups.push((rest & 0x7F) as u8);
                rest >>= 7;
                if rest == 0 {
                    break;
                }
            }
            let last = groups.len().saturating_sub(1);
            for (index, group) in groups.iter().rev().enumerate() {
                out.push(if index < last { group | 0x80 } else { *group });
            }
        }
    }
    let length = match header.length() {
        Length::Definite(length) => length,
        Length::Indefinite => value.data.len(),
    };
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value.data);
    out
}

/// The decimal text of a DER INTEGER's content bytes (two's complement, big-endian), as
/// Java's `BigInteger.toString()` writes it.
pub(super) fn signed_decimal(bytes: &[u8]) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // Magnitude, big-endian: the bytes themselves, or their two's complement negation.
    let mut magnitude: Vec<u8> = bytes.to_vec();
    if negative {
        for byte in &mut magnitude {
            *byte = !*byte;
        }
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10 of the big-endian magnitude.
    let mut digits: Vec<u8> = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder: u16 = 0;
        for byte in &mut magnitude {
            let current = (remainder << 8) | u16::from(*byte);
            *byte = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        return "0".to_owned();
    }
    let mut text = String::with_capacity(digits.len() + 1);
    if negative {
        text.push('-');
    }
    text.extend(digits.iter().rev().map(|&d| char::from(d)));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_signed_decimals() {
        assert_eq!(signed_decimal(&[0x07, 0xD2]), "2002");
        assert_eq!(signed_decimal(&[0x00, 0xFF]), "255");
        assert_eq!(signed_decimal(&[0xFF]), "-1");
        assert_eq!(signed_decimal(&[0x80]), "-128");
        assert_eq!(signed_decimal(&[0x00]), "0");
        assert_eq!(signed_decimal(&[]), "0");
        // 0x1FCFA18D6A480D11 (a real Alipay root's serial).
        assert_eq!(
            signed_decimal(&[0x1F, 0xCF, 0xA1, 0x8D, 0x6A, 0x48, 0x0D, 0x11]),
            "2292228364100439313"
        );
    }

    #[test]
    fn values_are_escaped_per_rfc_2253() {
        assert_eq!(
            escape("a,b+c\"d\\e<f>g;h"),
            "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"
        );
        assert_eq!(escape("#x y "), "\\#x y\\ ");
        assert_eq!(escape(" x#"), "\\ x#");
        assert_eq!(escape("a=b"), "a=b");
        assert_eq!(escape("中文\u{1}"), "中文\\01");
    }
}
