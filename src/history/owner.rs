//! Which node and which core own a stream: rendezvous (highest random
//! weight) hashing of (system, group) over the live nodes, so that a node
//! joining or leaving moves only the streams it wins or held; then a hash
//! over the owner's cores. The hash is written here, not taken from the
//! standard library, so that nodes of different builds agree during a
//! rolling deploy.

/// FNV-1a over the parts, each followed by a 0xff byte (never in UTF-8),
/// so that ("ab", "c") and ("a", "bc") differ.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The node of `nodes` that owns (system, group); None when `nodes` is
/// empty. Ties (never in practice) go to the smaller node id.
pub fn owner_node(system: &str, group: &str, nodes: impl IntoIterator<Item = u16>) -> Option<u16> {
    let key = fnv(&[system.as_bytes(), group.as_bytes()]);
    nodes
        .into_iter()
        .map(|n| (mix(key ^ mix(u64::from(n) + 1)), std::cmp::Reverse(n)))
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

/// The core of a node with `cores` cores that owns (system, group).
pub fn owner_core(system: &str, group: &str, cores: usize) -> u8 {
    let key = mix(fnv(&[system.as_bytes(), group.as_bytes(), b"core"]));
    (key % cores.max(1) as u64) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_one_of_the_nodes_and_the_same_whatever_their_order() {
        assert_eq!(owner_node("s", "g", []), None);
        for g in 0..100 {
            let g = format!("room:{g}");
            let a = owner_node("s", &g, [1, 2, 3]).unwrap();
            assert!([1, 2, 3].contains(&a));
            assert_eq!(owner_node("s", &g, [3, 1, 2]), Some(a));
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_streams_and_owners_spread() {
        let mut owned = [0; 4];
        for g in 0..3000 {
            let g = format!("room:{g}");
            let before = owner_node("s", &g, [1, 2, 3]).unwrap();
            owned[before as usize] += 1;
            let after = owner_node("s", &g, [1, 3]).unwrap();
            if before != 2 {
                assert_eq!(after, before, "{g} moved though its owner stayed");
            }
        }
        for (n, streams) in owned.iter().enumerate().skip(1) {
            assert!((800..1200).contains(streams), "node {n} owns {streams}");
        }
    }

    #[test]
    fn the_owner_core_is_a_core_of_the_node() {
        let mut used = [false; 3];
        for g in 0..100 {
            let c = owner_core("s", &format!("g{g}"), 3);
            used[c as usize] = true;
        }
        assert_eq!(used, [true; 3]);
        assert_eq!(owner_core("s", "g", 0), 0);
        assert_ne!(fnv(&[b"ab", b"c"]), fnv(&[b"a", b"bc"]));
    }
}
