//! A fault-injecting UDP proxy for WAN faults on loopback (there is no
//! `tc netem` here): sites dial the proxy, the proxy forwards to central,
//! and on the way it drops, duplicates, delays and reorders datagrams, or
//! cuts the path entirely, as told, while the connection runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::*;

/// What the proxy does to each datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability a datagram is dropped.
    pub drop: f64,
    /// Probability a datagram is sent twice.
    pub duplicate: f64,
    /// Probability a datagram is held back behind later ones.
    pub reorder: f64,
    /// Each datagram is delayed by up to this.
    pub max_delay: Duration,
    /// Nothing passes either way.
    pub partitioned: bool,
    /// Each direction carries at most this many bytes a second (0: no
    /// limit), queueing up to [`QUEUE_LIMIT`] of traffic and dropping the
    /// rest, as a router in front of a slower link does.
    pub rate: u64,
    /// Every datagram is delayed by this much, each way (half the RTT).
    pub latency: Duration,
}

/// The most a rate-limited direction queues before it drops.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(100);

/// Datagrams counted by fate.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Passed (copies included).
    pub passed: AtomicU64,
    /// Dropped, or lost to a partition.
    pub dropped: AtomicU64,
    /// UDP payload bytes passed towards the server.
    pub bytes_to_server: AtomicU64,
    /// UDP payload bytes passed towards the client.
    pub bytes_to_client: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    ToServer,
    ToClient,
}

type Due = Reverse<(Instant, u64, Direction, Vec<u8>)>;

struct Shared {
    faults: Mutex<Faults>,
    client: Mutex<Option<SocketAddr>>,
    queue: Mutex<BinaryHeap<Due>>,
    wake: Condvar,
    stop: AtomicBool,
    rng: Mutex<u64>,
    order: AtomicU64,
    stats: ProxyStats,
    /// When each direction's link is free again (rate-limited faults).
    link_free: Mutex<[Instant; 2]>,
}

impl Shared {
    fn random(&self) -> f64 {
        let mut state = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn submit(&self, direction: Direction, datagram: Vec<u8>) {
        let faults = *self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if faults.partitioned || self.random() < faults.drop {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut departs = Instant::now();
        if faults.rate > 0 {
            let mut free = self.link_free.lock().unwrap_or_else(|e| e.into_inner());
            let slot = &mut free[direction as usize];
            let start = (*slot).max(departs);
            if start > departs + QUEUE_LIMIT {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *slot = start + Duration::from_secs_f64(datagram.len() as f64 / faults.rate as f64);
            departs = *slot;
        }
        departs += faults.latency;
        let copies = if self.random() < faults.duplicate {
            2
        } else {
            1
        };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..copies {
            let mut delay = faults.max_delay.mul_f64(self.random());
            if self.random() < faults.reorder {
                // Held back long enough for later datagrams to overtake it.
                delay += faults.max_delay + Duration::from_millis(5);
            }
            let order = self.order.fetch_add(1, Ordering::Relaxed);
            queue.push(Reverse((
                departs + delay,
                order,
                direction,
                datagram.clone(),
            )));
        }
        self.wake.notify_one();
    }
}

/// A running proxy; stops when dropped.
pub struct UdpProxy {
    /// The port sites dial on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpProxy {
    /// A proxy to `target`, passing everything until told otherwise;
    /// `seed` makes its faults repeatable.
    pub fn start(target: SocketAddr, seed: u64) -> Result<UdpProxy> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(target)?;
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let port = front.local_addr()?.port();
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            client: Mutex::new(None),
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            rng: Mutex::new(seed | 1),
            order: AtomicU64::new(0),
            stats: ProxyStats::default(),
            link_free: Mutex::new([Instant::now(); 2]),
        });
        let (front, back) = (Arc::new(front), Arc::new(back));
        let mut threads = Vec::new();
        {
            let (shared, front) = (shared.clone(), front.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared.stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *shared.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                        shared.submit(Direction::ToServer, buf[..n].to_vec());
                    }
                }
            }));
        }
        {
            let (shared, back) = (shared.clone(), back.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !shared.stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        shared.submit(Direction::ToClient, buf[..n].to_vec());
                    }
                }
            }));
        }
        {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || deliver(&shared, &front, &back)));
        }
        Ok(UdpProxy {
            port,
            shared,
            threads,
        })
    }

    /// The address sites configure.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// From now on, does `faults` to every datagram.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// UDP payload bytes passed (to the server, to the client).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.stats.bytes_to_server.load(Ordering::Relaxed),
            self.shared.stats.bytes_to_client.load(Ordering::Relaxed),
        )
    }

    /// Datagrams passed and dropped so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.shared.stats.passed.load(Ordering::Relaxed),
            self.shared.stats.dropped.load(Ordering::Relaxed),
        )
    }
}

fn deliver(shared: &Shared, front: &UdpSocket, back: &UdpSocket) {
    let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        match queue.peek() {
            Some(Reverse((at, ..))) if *at <= now => {
                let Some(Reverse((_, _, direction, datagram))) = queue.pop() else {
                    continue;
                };
                drop(queue);
                let sent = match direction {
                    Direction::ToServer => back.send(&datagram).is_ok(),
                    Direction::ToClient => {
                        let client = *shared.client.lock().unwrap_or_else(|e| e.into_inner());
                        client.is_some_and(|c| front.send_to(&datagram, c).is_ok())
                    }
                };
                if sent {
                    shared.stats.passed.fetch_add(1, Ordering::Relaxed);
                    let bytes = match direction {
                        Direction::ToServer => &shared.stats.bytes_to_server,
                        Direction::ToClient => &shared.stats.bytes_to_client,
                    };
                    bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                }
                queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            }
            Some(Reverse((at, ..))) => {
                let wait = at.saturating_duration_since(now);
                queue = shared
                    .wake
                    .wait_timeout(queue, wait)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            None => {
                queue = shared
                    .wake
                    .wait_timeout(queue, Duration::from_millis(50))
                    .map(|(q, _)| q)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
