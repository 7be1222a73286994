//! Convention-wide global names: the table the convention's leader owns.
//!
//! In a convention, `create_actor_global(name)` gives one actor per name across all members,
//! not per system. The leader decides who may bind a name; every member keeps a copy of the
//! bindings, which the leader sends on every change and to each member that joins, so a
//! name that is bound is found from the copy even while the leader is unreachable. Binding a
//! new name needs the leader: without it the create fails at once, naming the leader.
//!
//! ```text
//!  member                         leader
//!  ClaimName { name, by } ──────▶ claim(): bound → Held(address)
//!                                         reserved by another → Busy
//!                                         free → Granted (reserved for `by`)
//!  ◀──── NameClaim { result }
//!  (creates the actor)
//!  NameBound { bound: true } ───▶ bind() ──▶ NameBound to every member
//!  (actor gone for good)
//!  NameBound { bound: false } ──▶ free() ──▶ NameBound to every member
//! ```
//!
//! A member that dies loses its names and its reservations (`node_lost`); a reservation
//! never bound within [`RESERVATION_TTL`] (its create failed and the word was lost with a
//! broken link) may be granted to another member.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use greenroom_protocol::{Address, NodeId};

/// What the leader answers a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name is free and now reserved for the claimant, who creates its actor.
    Granted,
    /// A live actor holds it: the claimant uses that address.
    Held(Address),
    /// Another member has reserved it and is creating its actor now.
    Busy(NodeId),
}

/// How long a reservation keeps a name from other members without being bound: far longer
/// than a create takes (a host start is milliseconds; a create times out after 50 s).
pub const RESERVATION_TTL: Duration = Duration::from_secs(60);

/// The leader's table of global names.
#[derive(Debug, Default)]
pub struct LeaderTable {
    bound: BTreeMap<String, Address>,
    reserved: BTreeMap<String, (NodeId, Instant)>,
}

impl LeaderTable {
    /// Node `by` wants `name`, at `now`.
    pub fn claim(&mut self, name: &str, by: NodeId, now: Instant) -> Claim {
        if let Some(holder) = self.bound.get(name) {
            return Claim::Held(*holder);
        }
        match self.reserved.get(name) {
            Some((node, at)) if *node != by && now.saturating_duration_since(*at) < RESERVATION_TTL => {
                Claim::Busy(*node)
            }
            _ => {
                self.reserved.insert(name.to_owned(), (by, now));
                Claim::Granted
            }
        }
    }

    /// `holder` now holds `name`; `false` if that was not its to take (another holds it, or
    /// another member reserved it).
    pub fn bind(&mut self, name: &str, holder: Address) -> bool {
        if self.bound.contains_key(name) || self.reserved.get(name).is_some_and(|(n, _)| *n != holder.node()) {
            return false;
        }
        self.reserved.remove(name);
        self.bound.insert(name.to_owned(), holder);
        true
    }

    /// `holder` is gone: its name is free; `false` if it did not hold it.
    pub fn free(&mut self, name: &str, holder: Address) -> bool {
        if self.bound.get(name) == Some(&holder) {
            self.bound.remove(name);
            return true;
        }
        if self.reserved.get(name).is_some_and(|(n, _)| *n == holder.node()) {
            // Reserved, and the create failed before the actor existed.
            self.reserved.remove(name);
        }
        false
    }

    /// The member of `node` is gone: the names its actors held, now free.
    pub fn node_lost(&mut self, node: NodeId) -> Vec<(String, Address)> {
        self.reserved.retain(|_, (n, _)| *n != node);
        let freed: Vec<(String, Address)> = self
            .bound
            .iter()
            .filter(|(_, a)| a.node() == node)
            .map(|(n, a)| (n.clone(), *a))
            .collect();
        for (name, _) in &freed {
            self.bound.remove(name);
        }
        freed
    }

    /// Who holds `name`, if anyone.
    pub fn holder(&self, name: &str) -> Option<Address> {
        self.bound.get(name).copied()
    }

    /// Every binding, for a member that joins.
    pub fn bindings(&self) -> impl Iterator<Item = (&String, &Address)> {
        self.bound.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    #[test]
    fn a_name_is_granted_once_then_held_and_free_again_when_its_holder_goes() {
        let (mut t, now) = (LeaderTable::default(), Instant::now());
        assert_eq!(t.claim("db", A, now), Claim::Granted);
        assert_eq!(t.claim("db", A, now), Claim::Granted, "the same member may ask again");
        assert_eq!(t.claim("db", B, now), Claim::Busy(A), "reserved for another");
        assert!(!t.bind("db", Address::new(B, 3)), "not B's to bind");
        assert!(t.bind("db", Address::new(A, 7)));
        assert_eq!(t.claim("db", B, now), Claim::Held(Address::new(A, 7)));
        assert!(!t.free("db", Address::new(A, 8)), "not its holder");
        assert!(t.free("db", Address::new(A, 7)));
        assert_eq!(t.claim("db", B, now), Claim::Granted);
    }

    #[test]
    fn a_lost_member_loses_its_names_and_reservations() {
        let (mut t, now) = (LeaderTable::default(), Instant::now());
        assert_eq!(t.claim("x", A, now), Claim::Granted);
        assert!(t.bind("x", Address::new(A, 2)));
        assert_eq!(t.claim("y", A, now), Claim::Granted);
        assert_eq!(t.claim("z", B, now), Claim::Granted);
        assert!(t.bind("z", Address::new(B, 2)));
        assert_eq!(t.node_lost(A), vec![("x".to_string(), Address::new(A, 2))]);
        assert_eq!(t.claim("x", B, now), Claim::Granted);
        assert_eq!(
            t.claim("y", B, now),
            Claim::Granted,
            "the reservation went with its member"
        );
        assert_eq!(t.claim("z", A, now), Claim::Held(Address::new(B, 2)));
    }
}

#[cfg(test)]
mod expiry {
    use super::*;

    #[test]
    fn a_reservation_never_bound_expires_for_other_members() {
        let (mut t, now) = (LeaderTable::default(), Instant::now());
        assert_eq!(t.claim("q", NodeId(1), now), Claim::Granted);
        assert_eq!(
            t.claim("q", NodeId(2), now + RESERVATION_TTL / 2),
            Claim::Busy(NodeId(1))
        );
        assert_eq!(t.claim("q", NodeId(2), now + RESERVATION_TTL), Claim::Granted);
        assert!(!t.bind("q", Address::new(NodeId(1), 4)), "no longer the first member's");
        assert!(t.bind("q", Address::new(NodeId(2), 4)));
    }
}
