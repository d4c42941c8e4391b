//! Printer pools (`[[pool]]`): which members take a pool's jobs now.
//!
//! Each member keeps its own forwarder; a pool adds its jobs (its direct
//! queues' and those released to it) to the feed of every member that
//! [`Pools::takes`] says may take them. How fit a member is comes from two
//! places: the prober here, which asks every member every
//! `output.probe_interval_secs` (`printer-state`, `printer-state-reasons`,
//! `printer-is-accepting-jobs` for IPP, a TCP connection for socket and LPD
//! printers), and the forwarders, which take a member out at once when it
//! cannot be reached. Only the prober puts a member back.
//!
//! The judging ([`judge`]) and choosing ([`takers`]) are pure functions.
//! A member is `ready`, `degraded` (it says something is wrong at report or
//! warning level, such as `media-empty-report`: it may print, but another
//! member is better) or `out`. `failover` gives the pool's jobs to the
//! first ready member in the listed order, else the first degraded one;
//! `least-busy` to every ready member (else every degraded one), each
//! taking the next job when it is free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, PoolConfig, PoolPolicy, PrinterConfig};
use crate::metrics::{Metrics, PoolLabels, PoolMemberLabels};
use crate::printer::{DeviceUri, OutputWake};
use crate::store::PoolFeed;

/// How fit a member is to take a pool's jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fitness {
    /// Nothing wrong.
    Ready,
    /// It reports a condition that may keep it from printing, at report or
    /// warning level: used only while no member is ready.
    Degraded(String),
    /// It cannot print now (unreachable, stopped, not accepting jobs, or a
    /// condition at error level).
    Out(String),
}

impl Fitness {
    /// `ready`, `degraded` or `out`.
    pub fn keyword(&self) -> &'static str {
        match self {
            Fitness::Ready => "ready",
            Fitness::Degraded(_) => "degraded",
            Fitness::Out(_) => "out",
        }
    }

    /// Why it is not ready.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Fitness::Ready => None,
            Fitness::Degraded(reason) | Fitness::Out(reason) => Some(reason),
        }
    }
}

/// `printer-state-reasons` keywords (without their severity suffix) that
/// keep a printer from printing a job now.
const BLOCKING_REASONS: [&str; 15] = [
    "media-empty",
    "media-needed",
    "media-jam",
    "door-open",
    "cover-open",
    "interlock-open",
    "input-tray-missing",
    "output-area-full",
    "marker-supply-empty",
    "toner-empty",
    "offline",
    "paused",
    "moving-to-paused",
    "shutdown",
    "spool-area-full",
];

/// Judges a printer by what it says of itself: `state` is `printer-state`
/// as a word, `reasons` the `printer-state-reasons`, `accepting`
/// `printer-is-accepting-jobs`.
///
/// A reason's severity is its suffix (RFC 8011 §5.4.12): `-error`, or none,
/// stops printing; `-warning` and `-report` may not, so they only make the
/// member degraded. Reasons that do not keep a printer from printing
/// (`toner-low`, `media-low`) are ignored.
pub fn judge(state: Option<&str>, reasons: &[String], accepting: Option<bool>) -> Fitness {
    if state == Some("stopped") {
        let why = if reasons.is_empty() {
            "stopped".to_owned()
        } else {
            format!("stopped ({})", reasons.join(", "))
        };
        return Fitness::Out(why);
    }
    if accepting == Some(false) {
        return Fitness::Out("not accepting jobs".into());
    }
    let mut degraded = Vec::new();
    for reason in reasons {
        let (base, soft) = match reason
            .strip_suffix("-report")
            .or_else(|| reason.strip_suffix("-warning"))
        {
            Some(base) => (base, true),
            None => (reason.strip_suffix("-error").unwrap_or(reason), false),
        };
        if !BLOCKING_REASONS.contains(&base) {
            continue;
        }
        if !soft {
            return Fitness::Out(reason.clone());
        }
        degraded.push(reason.as_str());
    }
    if degraded.is_empty() {
        Fitness::Ready
    } else {
        Fitness::Degraded(degraded.join(", "))
    }
}

/// Which members (by position) take the pool's jobs now, under `policy`.
pub fn takers(policy: PoolPolicy, members: &[Fitness]) -> Vec<bool> {
    let ready: Vec<bool> = members.iter().map(|f| *f == Fitness::Ready).collect();
    let usable = if ready.contains(&true) {
        ready
    } else {
        members
            .iter()
            .map(|f| matches!(f, Fitness::Degraded(_)))
            .collect()
    };
    match policy {
        PoolPolicy::LeastBusy => usable,
        PoolPolicy::Failover => {
            let first = usable.iter().position(|u| *u);
            (0..members.len()).map(|i| Some(i) == first).collect()
        }
    }
}

/// One pool as it stands.
#[derive(Debug, Clone)]
pub struct PoolView {
    /// Its configuration.
    pub config: PoolConfig,
    /// Each member's fitness, in the configured order.
    pub members: Vec<Fitness>,
    /// Which members are sending one of the pool's jobs now (until the
    /// printer took it, or it was passed on or held).
    pub sending: Vec<bool>,
}

impl PoolView {
    /// A pool of `config`, every member ready and idle.
    pub fn new(config: PoolConfig) -> PoolView {
        let n = config.printers.len();
        PoolView {
            config,
            members: vec![Fitness::Ready; n],
            sending: vec![false; n],
        }
    }

    /// Which members take its jobs now, by fitness alone.
    pub fn takers(&self) -> Vec<bool> {
        takers(self.config.policy, &self.members)
    }

    /// Whether member `i` may take the pool's next job now. Under
    /// `failover`, not while another member is still sending one: if that
    /// send fails, its job goes back to the pool and must go out before
    /// any later one.
    pub fn may_take(&self, i: usize) -> bool {
        let others_sending = self
            .sending
            .iter()
            .enumerate()
            .any(|(j, sending)| *sending && j != i);
        self.takers().get(i).copied().unwrap_or(false)
            && !(self.config.policy == PoolPolicy::Failover && others_sending)
    }
}

/// Every pool of the appliance, shared by the forwarders, the prober, the
/// IPP service and the metrics.
#[derive(Clone)]
pub struct Pools {
    pools: Arc<Mutex<HashMap<String, PoolView>>>,
    /// Member printer id → pool id.
    member_of: Arc<HashMap<String, String>>,
    /// Pool id → the direct queues that forward to it.
    queues: Arc<HashMap<String, Vec<String>>>,
    wake: OutputWake,
    metrics: Arc<Metrics>,
}

impl Pools {
    /// The pools of `config`, every member ready until probed.
    pub fn new(config: &Config, wake: OutputWake, metrics: Arc<Metrics>) -> Pools {
        let pools: HashMap<String, PoolView> = config
            .pools
            .iter()
            .map(|pool| (pool.id.clone(), PoolView::new(pool.clone())))
            .collect();
        let member_of = config
            .pools
            .iter()
            .flat_map(|pool| pool.printers.iter().map(|m| (m.clone(), pool.id.clone())))
            .collect();
        let queues = config
            .pools
            .iter()
            .map(|pool| {
                let feeding = config
                    .queues
                    .iter()
                    .filter(|q| q.printer.as_deref() == Some(pool.id.as_str()))
                    .map(|q| q.name.clone())
                    .collect();
                (pool.id.clone(), feeding)
            })
            .collect();
        let pools = Pools {
            pools: Arc::new(Mutex::new(pools)),
            member_of: Arc::new(member_of),
            queues: Arc::new(queues),
            wake,
            metrics,
        };
        for pool in &config.pools {
            pools.publish(pool.id.as_str());
        }
        pools
    }

    /// The pool's jobs, as a feed part, for the pool printer `member` is in.
    pub fn feed_of(&self, member: &str) -> Option<PoolFeed> {
        let pool = self.member_of.get(member)?;
        Some(PoolFeed {
            id: pool.clone(),
            queues: self.queues.get(pool).cloned().unwrap_or_default(),
        })
    }

    /// Whether printer `member` takes its pool's jobs now.
    pub fn takes(&self, member: &str) -> bool {
        let Some(pool) = self.member_of.get(member) else {
            return false;
        };
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.get(pool).is_some_and(|view| {
            let i = view.config.printers.iter().position(|m| m == member);
            i.is_some_and(|i| view.may_take(i))
        })
    }

    /// Whether a member of `member`'s pool other than it is fit to print.
    pub fn others_fit(&self, member: &str) -> bool {
        let Some(view) = self.member_of.get(member).and_then(|pool| self.view(pool)) else {
            return false;
        };
        view.config
            .printers
            .iter()
            .zip(&view.members)
            .any(|(m, fitness)| m != member && !matches!(fitness, Fitness::Out(_)))
    }

    /// Marks `member` as sending one of its pool's jobs until the returned
    /// guard drops (which wakes the pool's members: one may be waiting
    /// for this send to end).
    pub fn sending(&self, member: &str) -> SendingGuard {
        self.set_sending(member, true);
        SendingGuard {
            pools: self.clone(),
            member: member.to_owned(),
        }
    }

    fn set_sending(&self, member: &str, sending: bool) {
        let Some(pool) = self.member_of.get(member) else {
            return;
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(view) = pools.get_mut(pool)
            && let Some(i) = view.config.printers.iter().position(|m| m == member)
        {
            view.sending[i] = sending;
        }
    }

    /// A pool as it stands now.
    pub fn view(&self, pool: &str) -> Option<PoolView> {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.get(pool).cloned()
    }

    /// Records how fit `member` is. A change is logged, shown in the
    /// metrics, and wakes the pool's members (one may take over, or take
    /// work again).
    pub fn report(&self, member: &str, fitness: Fitness) {
        let Some(pool) = self.member_of.get(member) else {
            return;
        };
        let before = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(view) = pools.get_mut(pool) else {
                return;
            };
            let Some(i) = view.config.printers.iter().position(|m| m == member) else {
                return;
            };
            std::mem::replace(&mut view.members[i], fitness.clone())
        };
        // A new reason for the same state (each failed send words it its
        // own way) changes nothing anyone acts on.
        if before.keyword() == fitness.keyword() {
            return;
        }
        match &fitness {
            Fitness::Ready => {
                tracing::info!(%pool, printer = %member, "pool member back: it takes the pool's jobs again");
            }
            Fitness::Degraded(reason) => {
                tracing::warn!(%pool, printer = %member, %reason, "pool member degraded: other members take the pool's jobs first");
            }
            Fitness::Out(reason) => {
                tracing::warn!(%pool, printer = %member, %reason, "pool member out: the pool's jobs go to its other members until it is fit again");
            }
        }
        self.publish(pool);
        self.wake_pool(pool);
    }

    /// Logs how every pool stands (after the first probe at start).
    fn log_states(&self) {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, view) in pools.iter() {
            let states: Vec<String> = view
                .config
                .printers
                .iter()
                .zip(&view.members)
                .map(|(m, f)| format!("{m} {}", f.keyword()))
                .collect();
            let taking = view.takers().iter().filter(|t| **t).count();
            tracing::info!(
                pool = %id, policy = view.config.policy.keyword(), taking,
                members = %states.join(", "), "pool probed"
            );
        }
    }

    /// Wakes every member of `pool`.
    pub fn wake_pool(&self, pool: &str) {
        self.wake.wake(pool);
    }

    /// Sets the pool's metrics from its view.
    fn publish(&self, pool: &str) {
        let Some(view) = self.view(pool) else {
            return;
        };
        let metrics = &self.metrics;
        let takers = view.takers();
        for (member, fitness) in view.config.printers.iter().zip(&view.members) {
            for state in ["ready", "degraded", "out"] {
                metrics
                    .pool_member_state
                    .get_or_create(&PoolMemberLabels {
                        pool: pool.to_owned(),
                        printer: member.clone(),
                        state,
                    })
                    .set(i64::from(fitness.keyword() == state));
            }
        }
        metrics
            .pool_members_taking
            .get_or_create(&PoolLabels {
                pool: pool.to_owned(),
            })
            .set(takers.iter().filter(|t| **t).count() as i64);
    }
}

/// A member's send of a pool job, ended when dropped.
pub struct SendingGuard {
    pools: Pools,
    member: String,
}

impl Drop for SendingGuard {
    fn drop(&mut self) {
        self.pools.set_sending(&self.member, false);
        if let Some(pool) = self.pools.member_of.get(&self.member) {
            self.pools.wake_pool(pool);
        }
    }
}

/// Asks `printer` how it is: IPP printers by Get-Printer-Attributes, socket
/// and LPD printers by opening (and closing) a TCP connection, which starts
/// no job.
pub async fn probe(printer: &PrinterConfig, timeout: Duration) -> Fitness {
    match DeviceUri::with_trust(&printer.uri, printer.tls_ca.as_deref()) {
        Ok(DeviceUri::Ipp(ipp)) => match super::ipp::condition(&ipp, timeout).await {
            Ok(c) => judge(c.state.as_deref(), &c.state_reasons, c.accepting),
            Err(e) => Fitness::Out(e.to_string()),
        },
        Ok(DeviceUri::Socket { host, port } | DeviceUri::Lpd { host, port, .. }) => {
            match super::connect(&host, port, timeout).await {
                Ok(_) => Fitness::Ready,
                Err(e) => Fitness::Out(e.to_string()),
            }
        }
        Err(e) => Fitness::Out(e),
    }
}

/// Probes every pool member every `interval` until `shutdown` turns true,
/// all members at once.
pub async fn follow(
    pools: Pools,
    members: Vec<PrinterConfig>,
    interval: Duration,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if members.is_empty() {
        return;
    }
    let mut first = true;
    loop {
        let verdicts = futures_util::future::join_all(
            members
                .iter()
                .map(|member| async { (member.id.as_str(), probe(member, timeout).await) }),
        )
        .await;
        for (member, fitness) in verdicts {
            pools.report(member, fitness);
        }
        if std::mem::take(&mut first) {
            pools.log_states();
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn a_printer_that_cannot_print_is_out_and_one_that_warns_is_degraded() {
        assert_eq!(judge(Some("idle"), &[], Some(true)), Fitness::Ready);
        assert_eq!(judge(None, &[], None), Fitness::Ready);
        assert_eq!(
            judge(
                Some("idle"),
                &reasons(&["toner-low", "media-low-warning"]),
                Some(true)
            ),
            Fitness::Ready
        );
        for hard in ["media-jam", "media-empty-error", "door-open", "offline"] {
            assert_eq!(
                judge(Some("idle"), &reasons(&[hard]), Some(true)),
                Fitness::Out(hard.to_owned()),
                "{hard}"
            );
        }
        assert_eq!(
            judge(Some("idle"), &reasons(&["media-empty-report"]), Some(true)),
            Fitness::Degraded("media-empty-report".into())
        );
        assert_eq!(
            judge(Some("processing"), &reasons(&["cover-open-warning"]), None),
            Fitness::Degraded("cover-open-warning".into())
        );
        assert_eq!(
            judge(Some("stopped"), &reasons(&["paused"]), Some(true)),
            Fitness::Out("stopped (paused)".into())
        );
        assert_eq!(
            judge(Some("idle"), &[], Some(false)),
            Fitness::Out("not accepting jobs".into())
        );
    }

    #[test]
    fn failover_gives_the_jobs_to_the_first_fit_member_in_order() {
        use Fitness::*;
        let out = || Out("gone".into());
        let soft = || Degraded("media-empty-report".into());
        let f = |members: &[Fitness]| takers(PoolPolicy::Failover, members);
        assert_eq!(f(&[Ready, Ready, Ready]), [true, false, false]);
        assert_eq!(f(&[out(), Ready, Ready]), [false, true, false]);
        assert_eq!(f(&[soft(), out(), Ready]), [false, false, true]);
        assert_eq!(f(&[out(), soft(), soft()]), [false, true, false]);
        assert_eq!(f(&[out(), out(), out()]), [false, false, false]);
    }

    #[test]
    fn least_busy_lets_every_fit_member_take_the_next_job() {
        use Fitness::*;
        let out = || Out("gone".into());
        let soft = || Degraded("media-empty-report".into());
        let f = |members: &[Fitness]| takers(PoolPolicy::LeastBusy, members);
        assert_eq!(f(&[Ready, Ready, Ready]), [true, true, true]);
        assert_eq!(f(&[Ready, soft(), out()]), [true, false, false]);
        assert_eq!(f(&[soft(), soft(), out()]), [true, true, false]);
        assert_eq!(f(&[out(), out()]), [false, false]);
    }

    fn config() -> Config {
        Config::parse(
            r#"
            [[printer]]
            id = "a"
            uri = "ipp://127.0.0.1:1/ipp/print"
            [[printer]]
            id = "b"
            uri = "socket://127.0.0.1:2"
            [[pool]]
            id = "floor"
            printers = ["a", "b"]
            [[queue]]
            name = "floor-direct"
            kind = "direct"
            printer = "floor"
            "#,
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_member_reported_out_hands_the_pool_to_the_next() {
        let config = config();
        let wake = OutputWake::new(&config);
        let pools = Pools::new(&config, wake, Arc::new(Metrics::new()));
        assert_eq!(
            pools.feed_of("b"),
            Some(PoolFeed {
                id: "floor".into(),
                queues: vec!["floor-direct".into()]
            })
        );
        assert_eq!(pools.feed_of("floor"), None);
        assert!(pools.takes("a") && !pools.takes("b"));
        pools.report("a", Fitness::Out("not reachable".into()));
        assert!(!pools.takes("a") && pools.takes("b"));
        assert!(pools.others_fit("a") && !pools.others_fit("b"));
        pools.report("a", Fitness::Ready);
        assert!(pools.takes("a") && !pools.takes("b"));
    }

    #[test]
    fn under_failover_no_member_takes_a_job_while_another_still_sends_one() {
        let config = config();
        let pools = Pools::new(&config, OutputWake::new(&config), Arc::new(Metrics::new()));
        let sending = pools.sending("a");
        pools.report("a", Fitness::Out("not reachable".into()));
        assert!(!pools.takes("b"), "a's job may come back to the pool");
        drop(sending);
        assert!(pools.takes("b"));

        let mut view = PoolView::new(config.pools[0].clone());
        view.config.policy = PoolPolicy::LeastBusy;
        view.sending[0] = true;
        assert!(
            view.may_take(0) && view.may_take(1),
            "least-busy may reorder"
        );
    }
}
