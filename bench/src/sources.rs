//! Source addresses: connections are spread over 127.0.0.2..127.0.0.N (bound before
//! connect, with IP_BIND_ADDRESS_NO_PORT) so that tens of thousands of them to one
//! server port never run out of ephemeral ports.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail};

/// The default range used when the target is a loopback address.
pub const DEFAULT_LOOPBACK: &str = "127.0.0.2-127.0.0.40";

/// Parses `auto`, `none`, `A-B` ranges and comma-separated addresses.
/// `auto` means the default loopback range when the target is on loopback, else none.
pub fn parse(spec: &str, target_is_loopback: bool) -> anyhow::Result<Vec<Ipv4Addr>> {
    match spec {
        "none" => return Ok(Vec::new()),
        "auto" if target_is_loopback => return parse(DEFAULT_LOOPBACK, true),
        "auto" => return Ok(Vec::new()),
        _ => {}
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| anyhow!("bad address {a:?}"))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| anyhow!("bad address {b:?}"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 65_535 {
                    bail!("bad address range {part:?}");
                }
                out.extend((a..=b).map(Ipv4Addr::from));
            }
            None => out.push(part.parse().map_err(|_| anyhow!("bad address {part:?}"))?),
        }
    }
    if out.is_empty() {
        bail!("no source address in {spec:?}");
    }
    Ok(out)
}

/// The addresses of worker `index` of `workers`: a disjoint share when there are enough
/// addresses, else all of them.
pub fn share(all: &[Ipv4Addr], index: usize, workers: usize) -> Vec<Ipv4Addr> {
    if all.len() < workers {
        return all.to_vec();
    }
    all.iter()
        .enumerate()
        .filter(|(i, _)| i % workers == index)
        .map(|(_, a)| *a)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_shares() {
        let all = parse("127.0.0.2-127.0.0.5,127.0.0.9", true).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(share(&all, 1, 2).len(), 2);
        assert_eq!(share(&all, 0, 9).len(), 5);
        assert!(parse("auto", false).unwrap().is_empty());
        assert_eq!(parse("auto", true).unwrap().len(), 39);
        assert!(parse("127.0.0.5-127.0.0.2", true).is_err());
    }
}
