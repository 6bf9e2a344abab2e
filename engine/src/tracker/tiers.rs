//! Tracker tiers (BEP 12, `announce-list`): the order in which trackers are tried.
//!
//! BEP 12: each tier is shuffled once, when the torrent is loaded; tiers are tried in order and
//! the trackers of a tier in their (shuffled) order; a tracker that answers moves to the front of
//! its tier and stays there.
//!
//! Invariants: no tier is empty; a URL appears at most once over all tiers; at most
//! `MAX_TRACKERS` URLs, each at most `MAX_URL_LEN` bytes, with a scheme we speak (`http`,
//! `https`, `udp`). Anything else from the metainfo is dropped here, before it is stored.

use rand::seq::SliceRandom;
use rand::Rng;

/// Most tracker URLs kept for one torrent.
pub const MAX_TRACKERS: usize = 64;
/// Longest tracker URL kept.
pub const MAX_URL_LEN: usize = 2048;

/// The trackers of one torrent, in BEP 12 order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerList {
    tiers: Vec<Vec<String>>,
}

impl TrackerList {
    /// Builds the list from `announce-list` tiers (or `vec![vec![announce]]`), dropping URLs
    /// we cannot use and duplicates, then shuffles each tier once with `rng`.
    pub fn new<R: Rng + ?Sized>(tiers: Vec<Vec<String>>, rng: &mut R) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Vec<String>> = Vec::new();
        for tier in tiers {
            let mut kept: Vec<String> = tier
                .into_iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| usable_url(u))
                .filter(|u| seen.len() < MAX_TRACKERS && seen.insert(u.clone()))
                .collect();
            if !kept.is_empty() {
                kept.shuffle(rng);
                out.push(kept);
            }
        }
        TrackerList { tiers: out }
    }

    /// Every URL in the order to try them: tier by tier, front of each tier first.
    pub fn urls(&self) -> impl Iterator<Item = &str> + '_ {
        self.tiers.iter().flatten().map(String::as_str)
    }

    /// The tiers as they stand (each non-empty).
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// Records that `url` answered: it moves to the front of its tier (BEP 12), keeping the
    /// order of the others. Unknown URLs are ignored.
    pub fn mark_success(&mut self, url: &str) {
        for tier in &mut self.tiers {
            if let Some(pos) = tier.iter().position(|u| u == url) {
                tier[..=pos].rotate_right(1);
                return;
            }
        }
    }

    /// Number of URLs.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }
}

/// Joins tier lists in order of precedence (the torrent's, then the resume file's, then ones
/// the user added), unshuffled: duplicates and unusable URLs dropped, empty tiers dropped, at
/// most [`MAX_TRACKERS`] URLs. The result is what a resume file stores.
pub fn merge_tiers(lists: &[&[Vec<String>]]) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for tier in lists.iter().flat_map(|l| l.iter()) {
        let kept: Vec<String> = tier
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| usable_url(u))
            .filter(|u| seen.len() < MAX_TRACKERS && seen.insert(u.clone()))
            .collect();
        if !kept.is_empty() {
            out.push(kept);
        }
    }
    out
}

/// A tracker URL we can announce to: http, https or udp, at most [`MAX_URL_LEN`] bytes.
pub fn usable_url(u: &str) -> bool {
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    u.len() <= MAX_URL_LEN
        && (lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("udp://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn merged_tiers_keep_precedence_and_drop_repeats() {
        let s = |v: &[&str]| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let meta = vec![s(&["http://a/announce", "udp://b:1"]), s(&["http://c/x"])];
        let resume = vec![s(&["udp://b:1"]), s(&["http://d/y", "ftp://nope"])];
        let user = vec![s(&[" http://e/z "]), s(&["http://a/announce"])];
        let m = merge_tiers(&[&meta, &resume, &user]);
        assert_eq!(
            m,
            vec![
                s(&["http://a/announce", "udp://b:1"]),
                s(&["http://c/x"]),
                s(&["http://d/y"]),
                s(&["http://e/z"]),
            ]
        );
        let many: Vec<Vec<String>> = (0..MAX_TRACKERS + 5)
            .map(|i| vec![format!("http://t{i}/a")])
            .collect();
        assert_eq!(merge_tiers(&[&many]).len(), MAX_TRACKERS);
    }

    fn tiers() -> Vec<Vec<String>> {
        vec![
            vec![
                "http://127.0.0.1:1/a".into(),
                "http://127.0.0.1:2/a".into(),
                "udp://127.0.0.1:3".into(),
            ],
            vec!["http://127.0.0.1:4/a".into()],
        ]
    }

    #[test]
    fn shuffles_each_tier_but_keeps_tier_order() {
        let mut orders = std::collections::HashSet::new();
        for seed in 0..32 {
            let l = TrackerList::new(tiers(), &mut StdRng::seed_from_u64(seed));
            let urls: Vec<&str> = l.urls().collect();
            assert_eq!(urls.len(), 4);
            assert_eq!(
                urls[3], "http://127.0.0.1:4/a",
                "tier 2 after all of tier 1"
            );
            let mut first: Vec<&str> = urls[..3].to_vec();
            orders.insert(first.join(" "));
            first.sort();
            assert_eq!(
                first,
                [
                    "http://127.0.0.1:1/a",
                    "http://127.0.0.1:2/a",
                    "udp://127.0.0.1:3"
                ]
            );
        }
        assert!(orders.len() > 1, "32 seeds should give more than one order");
    }

    #[test]
    fn success_moves_to_front_of_its_tier() {
        let mut l = TrackerList::new(tiers(), &mut StdRng::seed_from_u64(7));
        let before: Vec<String> = l.urls().map(String::from).collect();
        let third = before[2].clone();
        l.mark_success(&third);
        let after: Vec<&str> = l.urls().collect();
        assert_eq!(after, [third.as_str(), &before[0], &before[1], &before[3]]);
        l.mark_success("http://127.0.0.1:4/a");
        assert_eq!(
            l.urls().nth(3),
            Some("http://127.0.0.1:4/a"),
            "stays in tier 2"
        );
        l.mark_success("http://unknown/");
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn drops_bad_urls_duplicates_and_empty_tiers() {
        let long = format!("http://127.0.0.1/{}", "a".repeat(MAX_URL_LEN));
        let l = TrackerList::new(
            vec![
                vec!["wss://127.0.0.1/".into(), long, "".into()],
                vec![
                    " http://127.0.0.1:1/a ".into(),
                    "HTTP://127.0.0.1:9/".into(),
                ],
                vec!["http://127.0.0.1:1/a".into()],
            ],
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(l.tiers().len(), 1);
        assert_eq!(l.len(), 2);
        assert!(l.urls().any(|u| u == "http://127.0.0.1:1/a"));

        let many: Vec<Vec<String>> = (0..MAX_TRACKERS + 5)
            .map(|i| vec![format!("udp://127.0.0.1:{i}")])
            .collect();
        assert_eq!(
            TrackerList::new(many, &mut StdRng::seed_from_u64(1)).len(),
            MAX_TRACKERS
        );
        assert!(TrackerList::new(vec![vec![]], &mut StdRng::seed_from_u64(1)).is_empty());
    }
}
