//! resolv.conf reading for `forward . /etc/resolv.conf`: only the `nameserver` lines
//! matter, each becomes an upstream on port 53 (as CoreDNS does). Link-local addresses
//! with a scope (`fe80::1%eth0`) cannot be used without an interface index: skipped.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// A resolv.conf is a few lines; anything bigger is not one.
const RESOLV_CONF_BYTES_MAX: u64 = 64 * 1024;

/// Reads a text file, refusing one larger than `bytes_max` (a Corefile or resolv.conf
/// is small; a huge one is a mistake, not something to load into memory).
pub(crate) fn read_bounded(path: &Path, bytes_max: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(bytes_max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > bytes_max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {bytes_max} bytes"),
        ));
    }
    Ok(text)
}

pub(crate) fn read_nameservers(path: &Path) -> std::io::Result<Vec<SocketAddr>> {
    read_bounded(path, RESOLV_CONF_BYTES_MAX).map(|text| nameservers(&text))
}

/// The `nameserver` addresses of resolv.conf text, in order.
pub(crate) fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers() {
        let text = "# generated\nsearch svc.cluster.local\nnameserver 10.0.0.1\n  nameserver\t8.8.8.8 # google\n\
                    nameserver 2001:db8::1\nnameserver fe80::1%eth0\nnameserver bogus\nnameserver\noptions ndots:5\n;nameserver 1.1.1.1\n";
        let got: Vec<String> = nameservers(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.1:53", "8.8.8.8:53", "[2001:db8::1]:53"]);
    }
}
