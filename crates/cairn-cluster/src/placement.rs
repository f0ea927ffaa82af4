//! Shard placement: which node holds which copy of which shard. Each node
//! decides for itself from the same inputs (the collection's record, the
//! live nodes, the nodes gone past the takeover delay) and writes its
//! decision with compare-and-set, so exactly one node steps in for a
//! missing copy.

use crate::wire::CollectionInfo;
use std::collections::HashSet;

/// Placement, decided by each node for itself: the collection's assignment
/// with `me` added to every shard that has fewer live copies than the
/// collection's replicas, when `me` is alive, does not hold the shard, and
/// is the live node holding the fewest shards of this collection among
/// those that do not hold it (ties: the smaller name), so that exactly one
/// node steps in. Nodes in `expired` (gone longer than the takeover delay)
/// leave the shard's list; a node gone for less keeps its place, so `me`
/// joins only where the list is then short. Returns the new assignment and
/// the shards `me` takes. Pure: the caller writes the result with
/// compare-and-set.
pub fn place(
    info: &CollectionInfo,
    me: &str,
    live: &HashSet<String>,
    expired: &HashSet<String>,
) -> (CollectionInfo, Vec<u32>) {
    let mut next = info.clone();
    let mut taken = Vec::new();
    if !live.contains(me) {
        return (next, taken);
    }
    for shard in 0..info.shards as usize {
        if next.assignment.len() <= shard {
            next.assignment.push(vec![]);
        }
        let assigned = &next.assignment[shard];
        if assigned.iter().any(|n| n == me) {
            continue;
        }
        let live_copies = assigned.iter().filter(|n| live.contains(*n)).count();
        if live_copies >= info.replicas as usize {
            continue;
        }
        let load = |n: &String| next.assignment.iter().filter(|a| a.contains(n)).count();
        let best = live
            .iter()
            .filter(|n| !assigned.contains(n))
            .min_by_key(|n| (load(n), (*n).clone()));
        if best.map(String::as_str) != Some(me) {
            continue;
        }
        let assigned = &mut next.assignment[shard];
        assigned.retain(|n| live.contains(n) || !expired.contains(n));
        if assigned.len() < info.replicas as usize {
            assigned.push(me.to_string());
            taken.push(shard as u32);
        }
    }
    (next, taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(shards: u32, replicas: u32, assignment: &[&[&str]]) -> CollectionInfo {
        CollectionInfo {
            name: "docs".into(),
            shards,
            replicas,
            embed_model: "m".into(),
            dim: 2,
            created_ms: 0,
            assignment: assignment
                .iter()
                .map(|a| a.iter().map(|n| n.to_string()).collect())
                .collect(),
        }
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_node_gone_past_the_delay_is_replaced_by_the_least_loaded_live_node() {
        let i = info(2, 2, &[&["a", "b"], &["b", "c"]]);
        let live = set(&["a", "c", "d"]);
        let gone = set(&["b"]);
        // d holds nothing: it steps in for shard 0; then a and d hold one
        // shard each, and the tie for shard 1 goes to a, not d.
        let (next, taken) = place(&i, "d", &live, &gone);
        assert_eq!(taken, [0]);
        assert_eq!(next.assignment, [vec!["a", "d"], vec!["b", "c"]]);
        // From the same state, the others leave both shards to d.
        assert_eq!(place(&i, "c", &live, &gone).1, Vec::<u32>::new());
        assert_eq!(place(&i, "a", &live, &gone).1, Vec::<u32>::new());
        // The next round, on d's written assignment: a takes shard 1.
        let (after, taken) = place(&next, "a", &live, &gone);
        assert_eq!(taken, [1]);
        assert_eq!(after.assignment, [vec!["a", "d"], vec!["c", "a"]]);
        assert!(place(&after, "d", &live, &gone).1.is_empty(), "settled");
    }

    #[test]
    fn a_node_gone_for_less_than_the_delay_keeps_its_place() {
        let i = info(1, 2, &[&["a", "b"]]);
        let (next, taken) = place(&i, "c", &set(&["a", "c"]), &set(&[]));
        assert!(taken.is_empty());
        assert_eq!(next, i);
    }

    #[test]
    fn a_short_list_is_filled_at_once_and_a_dead_node_never_places_itself() {
        // Created with one live node for R = 2: the next node joins at once.
        let i = info(2, 2, &[&["a"], &["a"]]);
        let (next, taken) = place(&i, "b", &set(&["a", "b"]), &set(&[]));
        assert_eq!(taken, [0, 1]);
        assert_eq!(next.assignment, [vec!["a", "b"], vec!["a", "b"]]);
        // A node that holds the shard, or is not alive, changes nothing.
        assert!(place(&i, "a", &set(&["a", "b"]), &set(&[])).1.is_empty());
        assert!(place(&i, "z", &set(&["a"]), &set(&[])).1.is_empty());
        // Ties on load go to the smaller name.
        let i = info(1, 2, &[&["a"]]);
        let live = set(&["a", "b", "c"]);
        assert_eq!(place(&i, "b", &live, &set(&[])).1, [0]);
        assert!(place(&i, "c", &live, &set(&[])).1.is_empty());
    }
}
