//! The leader's fencing decision for one member: when to suspect it, how its fence is
//! confirmed, when it rejoins. One pure function, used by [`crate::ClusterController`]
//! (which the simulator tests) and by the daemon's leader, so both decide alike.
//!
//! The caller gathers the facts (liveness from its clock, the lease arithmetic, the quorum
//! count); the rules live here.

use crate::types::FencingMethod;

/// Where a member stands with fencing (the committed record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Clean,
    /// Suspected: nothing of it is touched or recovered until its fence is confirmed.
    Unclean,
    Fenced,
}

/// What the leader knows of one member when it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberCase {
    pub standing: Standing,
    /// Heard from within the node timeout (a heartbeat, or for the daemon a Raft answer).
    pub alive: bool,
    pub method: FencingMethod,
    /// Every lease it may hold has certainly lapsed, its watchdog's reset time included.
    pub lease_certainly_lapsed: bool,
    /// The alive voters other than this member make a majority of the voters.
    pub quorum_without: bool,
}

/// Cluster-wide settings of the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FencingPolicy {
    /// Two members and no witness: a lost host cannot be told from a partition.
    pub two_without_witness: bool,
    /// Tests only: confirm a suspected host's fence without any evidence (breaks I2).
    pub unsafe_recovery: bool,
}

/// What to do about the member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Commit the suspicion.
    Suspect,
    /// Unclean, answers again and has no device to race: nothing of it was recovered
    /// (that waits for a confirmed fence), so the suspicion is withdrawn.
    Clear,
    /// Fenced and heard from again: it rejoins and starts clean.
    Rejoin,
    FenceByDevice,
    /// Commit the fence as confirmed by certain lease expiry.
    ConfirmLeaseExpired,
    /// Commit the fence without evidence (the unsafe test setting).
    ConfirmUnsafe,
    /// Automatic recovery is refused; the reason is for the status.
    Refuse(String),
}

/// Whether `others_alive` voters (a member not counted) are a majority of `voters`: the
/// [`MemberCase::quorum_without`] fact, counted alike by every caller.
pub fn majority_without(others_alive: usize, voters: usize) -> bool {
    others_alive * 2 > voters
}

/// The rules, in order (DESIGN section 4).
pub fn judge(name: &str, case: &MemberCase, policy: &FencingPolicy) -> Verdict {
    match case.standing {
        Standing::Clean if case.alive => Verdict::Nothing,
        Standing::Clean if policy.two_without_witness => Verdict::Refuse(format!(
            "host {name} is silent; two members without a witness: automatic recovery is \
             refused (add a witness, or `node confirm-fenced {name}`)"
        )),
        // Every commit needs its vote then, so a committed suspicion would itself prove
        // it alive: it is late, not dead, and fencing it would end the quorum.
        Standing::Clean if !case.quorum_without => Verdict::Nothing,
        Standing::Clean => Verdict::Suspect,
        Standing::Unclean if case.alive && case.method != FencingMethod::Device => Verdict::Clear,
        Standing::Unclean if policy.unsafe_recovery => Verdict::ConfirmUnsafe,
        Standing::Unclean if policy.two_without_witness => Verdict::Refuse(format!(
            "host {name} is unclean; two members without a witness: automatic recovery is \
             refused (add a witness, or `node confirm-fenced {name}`)"
        )),
        Standing::Unclean => match case.method {
            FencingMethod::Device => Verdict::FenceByDevice,
            FencingMethod::SelfFence if case.lease_certainly_lapsed => Verdict::ConfirmLeaseExpired,
            FencingMethod::SelfFence => Verdict::Nothing,
            FencingMethod::None => Verdict::Refuse(format!(
                "host {name} is unclean and has no fencing method: its resources wait for \
                 `node confirm-fenced {name}`"
            )),
        },
        Standing::Fenced if case.alive => Verdict::Rejoin,
        Standing::Fenced => Verdict::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(standing: Standing, alive: bool, method: FencingMethod) -> MemberCase {
        MemberCase {
            standing,
            alive,
            method,
            lease_certainly_lapsed: false,
            quorum_without: true,
        }
    }

    const POLICY: FencingPolicy = FencingPolicy {
        two_without_witness: false,
        unsafe_recovery: false,
    };

    #[test]
    fn a_silent_member_is_suspected_unless_the_quorum_rests_on_it() {
        let silent = case(Standing::Clean, false, FencingMethod::Device);
        assert_eq!(judge("h1", &silent, &POLICY), Verdict::Suspect);
        let needed = MemberCase {
            quorum_without: false,
            ..silent
        };
        assert_eq!(judge("h1", &needed, &POLICY), Verdict::Nothing);
        let alive = case(Standing::Clean, true, FencingMethod::Device);
        assert_eq!(judge("h1", &alive, &POLICY), Verdict::Nothing);
    }

    #[test]
    fn two_members_without_a_witness_refuse_and_say_why() {
        let policy = FencingPolicy {
            two_without_witness: true,
            ..POLICY
        };
        let silent = case(Standing::Clean, false, FencingMethod::Device);
        assert!(
            matches!(judge("h2", &silent, &policy), Verdict::Refuse(reason) if reason.contains("witness"))
        );
        let unclean = case(Standing::Unclean, false, FencingMethod::Device);
        assert!(matches!(judge("h2", &unclean, &policy), Verdict::Refuse(_)));
    }

    #[test]
    fn an_unclean_member_is_confirmed_only_with_evidence() {
        let device = case(Standing::Unclean, false, FencingMethod::Device);
        assert_eq!(judge("h1", &device, &POLICY), Verdict::FenceByDevice);
        let waiting = case(Standing::Unclean, false, FencingMethod::SelfFence);
        assert_eq!(judge("h1", &waiting, &POLICY), Verdict::Nothing);
        let lapsed = MemberCase {
            lease_certainly_lapsed: true,
            ..waiting
        };
        assert_eq!(judge("h1", &lapsed, &POLICY), Verdict::ConfirmLeaseExpired);
        let none = case(Standing::Unclean, false, FencingMethod::None);
        assert!(matches!(judge("h1", &none, &POLICY), Verdict::Refuse(_)));
    }

    #[test]
    fn an_unclean_member_that_answers_again_is_cleared_unless_a_device_races_it() {
        let answering = case(Standing::Unclean, true, FencingMethod::SelfFence);
        assert_eq!(judge("h1", &answering, &POLICY), Verdict::Clear);
        let with_device = case(Standing::Unclean, true, FencingMethod::Device);
        assert_eq!(judge("h1", &with_device, &POLICY), Verdict::FenceByDevice);
    }

    #[test]
    fn a_fenced_member_rejoins_when_heard_from() {
        let back = case(Standing::Fenced, true, FencingMethod::Device);
        assert_eq!(judge("h1", &back, &POLICY), Verdict::Rejoin);
        let gone = case(Standing::Fenced, false, FencingMethod::Device);
        assert_eq!(judge("h1", &gone, &POLICY), Verdict::Nothing);
    }

    #[test]
    fn the_unsafe_setting_confirms_without_evidence() {
        let policy = FencingPolicy {
            unsafe_recovery: true,
            ..POLICY
        };
        let silent = case(Standing::Unclean, false, FencingMethod::None);
        assert_eq!(judge("h1", &silent, &policy), Verdict::ConfirmUnsafe);
    }
}
