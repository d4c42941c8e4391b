//! Which central endpoint a site dials, and when: a pure state machine.
//!
//! Endpoints are tried in the configured order, the first being the
//! preferred one. When a whole round fails the site waits, doubling the
//! wait each round up to a maximum, with jitter so that a fleet whose
//! central comes back does not dial in step. Connected elsewhere than the
//! preferred endpoint, the site probes the preferred one now and then and
//! moves back when it answers. A connection that ends is followed at once
//! by a dial of the next endpoint; one that ends soon after it was made
//! counts as a failed dial, so a round of centrals that accept and drop at
//! once backs off rather than being hammered.

use std::time::{Duration, Instant};

/// Timing of the dialer.
#[derive(Debug, Clone, Copy)]
pub struct DialSettings {
    /// First wait after a failed round.
    pub initial_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
    /// How often to probe the preferred endpoint while on another.
    pub probe_interval: Duration,
    /// A connection shorter than this counts as a failure.
    pub min_healthy: Duration,
}

impl Default for DialSettings {
    fn default() -> Self {
        DialSettings {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            probe_interval: Duration::from_secs(30),
            min_healthy: Duration::from_secs(10),
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialAction {
    /// Connect to the endpoint at this index; report with
    /// [`Dialer::connected`] or [`Dialer::failed`].
    Dial(usize),
    /// While connected, try the preferred endpoint (index 0); report with
    /// [`Dialer::probed`].
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Dial this endpoint at this time.
    Due { index: usize, at: Instant },
    /// A dial is under way.
    Dialing { index: usize },
    /// Connected.
    Connected {
        index: usize,
        since: Instant,
        probe_at: Option<Instant>,
        probing: bool,
    },
}

/// The site's choice of central endpoint.
#[derive(Debug, Clone)]
pub struct Dialer {
    endpoints: usize,
    settings: DialSettings,
    state: State,
    failed_rounds: u32,
    rng: u64,
}

impl Dialer {
    /// A dialer over `endpoints` endpoints (at least one), dialing the
    /// preferred one at once; `seed` drives the jitter.
    pub fn new(endpoints: usize, settings: DialSettings, seed: u64, now: Instant) -> Dialer {
        Dialer {
            endpoints: endpoints.max(1),
            settings,
            state: State::Due { index: 0, at: now },
            failed_rounds: 0,
            // splitmix64 of the seed: neighbouring seeds start far apart.
            rng: {
                let z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) | 1
            },
        }
    }

    /// The next action due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<DialAction> {
        match self.state {
            State::Due { index, at } if now >= at => {
                self.state = State::Dialing { index };
                Some(DialAction::Dial(index))
            }
            State::Connected {
                index,
                since,
                probe_at: Some(at),
                probing: false,
            } if now >= at => {
                self.state = State::Connected {
                    index,
                    since,
                    probe_at: None,
                    probing: true,
                };
                Some(DialAction::Probe)
            }
            _ => None,
        }
    }

    /// When [`Dialer::poll`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Due { at, .. } => Some(at),
            State::Connected {
                probe_at: Some(at),
                probing: false,
                ..
            } => Some(at),
            _ => None,
        }
    }

    /// The endpoint connected to, if any.
    pub fn connected_to(&self) -> Option<usize> {
        match self.state {
            State::Connected { index, .. } => Some(index),
            _ => None,
        }
    }

    /// The dial of `index` succeeded.
    pub fn connected(&mut self, index: usize, now: Instant) {
        self.state = State::Connected {
            index,
            since: now,
            probe_at: (index != 0).then(|| now + self.settings.probe_interval),
            probing: false,
        };
    }

    /// The dial of `index` failed: the next endpoint at once, or, after the
    /// last, the first again after a wait.
    pub fn failed(&mut self, index: usize, now: Instant) {
        if index + 1 < self.endpoints {
            self.state = State::Due {
                index: index + 1,
                at: now,
            };
        } else {
            self.round_failed(now);
        }
    }

    /// The connection ended: the next endpoint is dialed at once, not the
    /// one just lost (a node that stopped or is restarting is the likeliest
    /// to be down, and waiting out a dial to it would keep the site from
    /// the others); the preferred endpoint is probed and taken back as on
    /// any fallback. A connection shorter than `min_healthy` counts as its
    /// endpoint failing, so a round of them backs off.
    pub fn disconnected(&mut self, now: Instant) {
        let State::Connected { index, since, .. } = self.state else {
            return;
        };
        if now.duration_since(since) < self.settings.min_healthy {
            self.failed(index, now);
        } else {
            self.failed_rounds = 0;
            self.state = State::Due {
                index: (index + 1) % self.endpoints,
                at: now,
            };
        }
    }

    /// The probe of the preferred endpoint answered (`ok`) or not. On
    /// success the shell moves its session to the preferred endpoint and
    /// the dialer counts it connected there.
    pub fn probed(&mut self, ok: bool, now: Instant) {
        let State::Connected { index, since, .. } = self.state else {
            return;
        };
        if ok {
            self.connected(0, now);
        } else {
            self.state = State::Connected {
                index,
                since,
                probe_at: Some(now + self.settings.probe_interval),
                probing: false,
            };
        }
    }

    fn round_failed(&mut self, now: Instant) {
        self.failed_rounds = self.failed_rounds.saturating_add(1);
        let wait = self.backoff();
        self.state = State::Due {
            index: 0,
            at: now + wait,
        };
    }

    /// The wait after `failed_rounds` failed rounds: the doubled backoff,
    /// capped, then a random point in its upper half.
    fn backoff(&mut self) -> Duration {
        let doublings = self.failed_rounds.saturating_sub(1).min(20);
        let full = self
            .settings
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.settings.max_backoff);
        let half = full / 2;
        let jitter = half.mul_f64(self.next_unit());
        half + jitter
    }

    /// A uniform number in [0, 1) (xorshift64*; jitter needs no more).
    fn next_unit(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DialSettings {
        DialSettings {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            probe_interval: Duration::from_secs(30),
            min_healthy: Duration::from_secs(10),
        }
    }

    #[test]
    fn endpoints_are_tried_in_order_then_the_round_backs_off() {
        let t0 = Instant::now();
        let mut d = Dialer::new(3, settings(), 7, t0);
        assert_eq!(d.poll(t0), Some(DialAction::Dial(0)));
        assert_eq!(d.poll(t0), None);
        d.failed(0, t0);
        assert_eq!(d.poll(t0), Some(DialAction::Dial(1)));
        d.failed(1, t0);
        assert_eq!(d.poll(t0), Some(DialAction::Dial(2)));
        d.failed(2, t0);
        // Round one failed: wait between 0.5 and 1 s, then the first again.
        let at = d.poll_timeout().unwrap();
        assert!(at >= t0 + Duration::from_millis(500) && at <= t0 + Duration::from_secs(1));
        assert_eq!(d.poll(at - Duration::from_millis(1)), None);
        assert_eq!(d.poll(at), Some(DialAction::Dial(0)));
    }

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let t0 = Instant::now();
        let mut d = Dialer::new(1, settings(), 42, t0);
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..7 {
            assert_eq!(d.poll(now), Some(DialAction::Dial(0)));
            d.failed(0, now);
            let at = d.poll_timeout().unwrap();
            waits.push(at - now);
            now = at;
        }
        let caps = [1, 2, 4, 8, 8, 8, 8];
        for (wait, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_secs(cap);
            assert!(*wait >= cap / 2 && *wait <= cap, "{waits:?}");
        }
        // Jitter: not every capped wait is the same.
        assert!(waits[3..].windows(2).any(|w| w[0] != w[1]), "{waits:?}");
        // Two sites with other seeds do not wait in step.
        let mut other = Dialer::new(1, settings(), 43, t0);
        other.poll(t0);
        other.failed(0, t0);
        assert_ne!(other.poll_timeout().unwrap() - t0, waits[0]);
    }

    #[test]
    fn on_a_fallback_the_preferred_endpoint_is_probed_and_taken_back() {
        let t0 = Instant::now();
        let mut d = Dialer::new(2, settings(), 1, t0);
        d.poll(t0);
        d.failed(0, t0);
        d.poll(t0);
        d.connected(1, t0);
        assert_eq!(d.connected_to(), Some(1));
        let probe = d.poll_timeout().unwrap();
        assert_eq!(probe, t0 + Duration::from_secs(30));
        assert_eq!(d.poll(probe), Some(DialAction::Probe));
        assert_eq!(d.poll_timeout(), None);
        d.probed(false, probe);
        let again = d.poll_timeout().unwrap();
        assert_eq!(again, probe + Duration::from_secs(30));
        assert_eq!(d.poll(again), Some(DialAction::Probe));
        d.probed(true, again);
        assert_eq!(d.connected_to(), Some(0));
        // On the preferred endpoint nothing is probed.
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn a_connection_that_drops_at_once_backs_off_a_healthy_one_redials_now() {
        let t0 = Instant::now();
        let mut d = Dialer::new(1, settings(), 1, t0);
        d.poll(t0);
        d.connected(0, t0);
        d.disconnected(t0 + Duration::from_secs(1));
        assert!(d.poll_timeout().unwrap() > t0 + Duration::from_secs(1));
        let at = d.poll_timeout().unwrap();
        d.poll(at);
        d.connected(0, at);
        let later = at + Duration::from_secs(60);
        d.disconnected(later);
        assert_eq!(d.poll(later), Some(DialAction::Dial(0)));
    }

    #[test]
    fn a_lost_node_is_left_for_the_next_at_once_and_the_preferred_taken_back() {
        let t0 = Instant::now();
        let mut d = Dialer::new(3, settings(), 1, t0);
        d.poll(t0);
        d.connected(0, t0);
        let lost = t0 + Duration::from_secs(60);
        d.disconnected(lost);
        assert_eq!(d.poll(lost), Some(DialAction::Dial(1)));
        d.connected(1, lost);
        // Node 1 is lost too: the next, then round to the first.
        let lost_again = lost + Duration::from_secs(60);
        d.disconnected(lost_again);
        assert_eq!(d.poll(lost_again), Some(DialAction::Dial(2)));
        d.failed(2, lost_again);
        assert_eq!(d.poll(lost_again), None);
        // A failed last endpoint ends the round: the first after a wait.
        let at = d.poll_timeout().unwrap();
        assert_eq!(d.poll(at), Some(DialAction::Dial(0)));
        d.connected(0, at);
        assert_eq!(
            d.poll_timeout(),
            None,
            "on the preferred one nothing is probed"
        );
        // Lost soon after it was made: the next one still at once, but a
        // whole round of short connections backs off.
        let soon = at + Duration::from_secs(1);
        d.disconnected(soon);
        assert_eq!(d.poll(soon), Some(DialAction::Dial(1)));
        for index in 1..3 {
            d.connected(index, soon);
            d.disconnected(soon);
            assert_eq!(d.poll(soon), (index < 2).then_some(DialAction::Dial(2)));
        }
        assert!(d.poll_timeout().unwrap() > soon, "{:?}", d.poll_timeout());
    }
}
