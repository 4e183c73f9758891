//! One stable sort for the module's few short lists (remembered sources,
//! recent logins, the secrets [`crate::http::scrub`] replaces longest
//! first), none longer than a few dozen entries.
//!
//! Why not `slice::sort_by_key`: std's driftsort is monomorphised per element
//! type and key, about 3.5 KB of code for each of the four lists in the
//! module (measured with `cargo bloat`; BENCHMARKS.md), where an insertion
//! sort costs a few hundred bytes and is as quick for lists this short.

/// Sorts `v` by `key`, keeping the order of equal keys (stable), in
/// O(n²) comparisons: for short lists only.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && key(&v[j - 1]) > key(&v[j]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sort_by_key;

    #[test]
    fn sorts_and_keeps_equal_keys_in_order() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd'), (1, 'e'), (0, 'f')];
        sort_by_key(&mut v, |p| p.0);
        assert_eq!(
            v,
            [(0, 'f'), (1, 'b'), (1, 'e'), (2, 'd'), (3, 'a'), (3, 'c')]
        );
    }

    #[test]
    fn matches_std_on_many_lists() {
        // A fixed pseudo-random sequence (no RNG needed for a sort test).
        let mut x: u32 = 12_345;
        for len in 0..40 {
            let mut v: Vec<(u32, usize)> = (0..len)
                .map(|i| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ((x >> 16) % 7, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|p| p.0);
            sort_by_key(&mut v, |p| p.0);
            assert_eq!(v, expected, "len {len}");
        }
    }

    #[test]
    fn reverse_keys_sort_longest_first() {
        let mut v = ["ab", "abcd", "a", "abc", "xy"];
        sort_by_key(&mut v, |s| std::cmp::Reverse(s.len()));
        assert_eq!(v, ["abcd", "abc", "ab", "xy", "a"]);
    }
}
