//! What the simulated cluster runs: a real [`ClusterConfig`], built from a config
//! file's text and validated by the same `validate` as `vigil config check`, for a
//! timer profile: the simulator's own legacy set, a shipped profile (`default`,
//! `fast`) as the config produces it, or a random valid config drawn from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::path::Path;
use std::time::Duration;
use vigil::config::ClusterConfig;
use vigil::health::OnFailure;
use vigil_fence::StallAction;
use vigil_llt::FrameKey;

use crate::world::Timers;

/// The name of the simulated probe, in every config.
pub const SIM_PROBE: &str = "sim-disk";

/// Bound on redraws of a random config (a draw that does not validate is drawn
/// again; almost every draw validates).
const MAX_DRAWS: u32 = 1000;

/// Which timers (and, for `Random`, which whole config) a drill runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The simulator's own set (heartbeat 10, peer_inactive 80, race 60, lease 70 ms),
    /// two links, no key: what the scenario files' expectations are tuned to.
    #[default]
    Legacy,
    /// The shipped `timers.profile = "default"` (heartbeat 100, peer_inactive 600,
    /// race 200, lease 500 ms), two high-priority links, a key.
    Default,
    /// The shipped `timers.profile = "fast"` (heartbeat 10, peer_inactive 50, race 40,
    /// lease 40 ms), two high-priority links, a key.
    Fast,
    /// A random config per drill, drawn from the drill's seed: every timer, 1 to 4
    /// links and their priorities and kinds, the seed count, a key or none, the
    /// drift bound and the probe's settings, redrawn until it validates.
    Random,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Legacy,
        Profile::Default,
        Profile::Fast,
        Profile::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Legacy => "legacy",
            Profile::Default => "default",
            Profile::Fast => "fast",
            Profile::Random => "random",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == s)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A simulated cluster's config: the file's text (what `vigil config check` would
/// read; a key, when there is one, is set by the simulator) and what it validated to.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub profile: Profile,
    pub text: String,
    /// Frames carry a MAC under a key the simulator made.
    pub keyed: bool,
    pub cluster: ClusterConfig,
}

impl SimConfig {
    /// The timers the world and the drills are timed by.
    pub fn timers(&self) -> Timers {
        let t = &self.cluster.timers;
        Timers {
            heartbeat: t.heartbeat,
            peer_trouble: t.peer_trouble,
            peer_inactive: t.peer_inactive,
            race_timeout: t.race_timeout,
            lease: t.lease,
            max_drift_ppm: self.cluster.cluster.max_drift_ppm,
        }
    }

    /// How much slower than the legacy timers this config's are: drill durations
    /// (warm-up, fault spacing, stalls, repair) are multiplied by it, so that a
    /// profile with slower timers is given the same number of heartbeats,
    /// detections and races. 1 for the legacy set and the fast profile, 10 for the
    /// default profile.
    pub fn scale(&self) -> f64 {
        scale_of(&self.timers())
    }

    pub fn links(&self) -> usize {
        self.cluster.links.len()
    }

    pub fn nodes(&self) -> u8 {
        self.cluster.nodes.len() as u8
    }
}

/// See [`SimConfig::scale`].
pub fn scale_of(t: &Timers) -> f64 {
    let legacy = Timers::default();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    [
        ratio(t.heartbeat, legacy.heartbeat),
        ratio(t.peer_inactive, legacy.peer_inactive),
        ratio(t.race_timeout, legacy.race_timeout),
        ratio(t.lease, legacy.lease),
    ]
    .into_iter()
    .fold(1.0f64, f64::max)
}

/// One link of a config being written.
struct LinkDraw {
    high: bool,
    ether: bool,
}

/// What a config file says, before it is written out.
struct Draw {
    nodes: u8,
    seed: usize,
    /// `[timers]`: a profile name, or every timer (ms) and `link_up_count`.
    timers: TimerDraw,
    drift_ppm: Option<u32>,
    links: Vec<LinkDraw>,
    keyed: bool,
    stall_action: StallAction,
    /// Probe interval, timeout (ms) and threshold.
    probe: (u64, u64, u32),
    on_failure: OnFailure,
}

enum TimerDraw {
    Profile(&'static str),
    Explicit {
        heartbeat: u64,
        heartbeat_lowpri: u64,
        peer_trouble: u64,
        peer_inactive: u64,
        link_up_count: u32,
        race_timeout: u64,
        lease: u64,
        stall_report: u64,
    },
}

impl Draw {
    /// The file. A keyed one names `sim.key` (made by the simulator, not on
    /// disk); `parsed` writes `insecure = true` in its place, for the parser,
    /// which reads key files, and the key is set after.
    fn text(&self, parsed: bool) -> String {
        let mut t = String::new();
        t.push_str("[cluster]\nname = \"sim\"\nid = 1\n");
        t.push_str(&format!("seed = {}\n", self.seed));
        if self.keyed && !parsed {
            t.push_str("key_file = \"sim.key\"\n");
        } else {
            t.push_str("insecure = true\n");
        }
        if let Some(d) = self.drift_ppm {
            t.push_str(&format!("max_drift_ppm = {d}\n"));
        }
        t.push_str("\n[timers]\n");
        match &self.timers {
            TimerDraw::Profile(p) => t.push_str(&format!("profile = \"{p}\"\n")),
            TimerDraw::Explicit {
                heartbeat,
                heartbeat_lowpri,
                peer_trouble,
                peer_inactive,
                link_up_count,
                race_timeout,
                lease,
                stall_report,
            } => t.push_str(&format!(
                "heartbeat = {heartbeat}\nheartbeat_lowpri = {heartbeat_lowpri}\n\
                 peer_trouble = {peer_trouble}\npeer_inactive = {peer_inactive}\n\
                 link_up_count = {link_up_count}\nrace_timeout = {race_timeout}\n\
                 lease = {lease}\nstall_report = {stall_report}\n"
            )),
        }
        let stall = match self.stall_action {
            StallAction::Fence => "fence",
            StallAction::Rejoin => "rejoin",
        };
        t.push_str(&format!("\n[daemon]\nstall_action = \"{stall}\"\n"));
        for (l, link) in self.links.iter().enumerate() {
            let prio = if link.high { "high" } else { "low" };
            if link.ether {
                t.push_str(&format!(
                    "\n[[links]]\nname = \"l{l}\"\nkind = \"ether\"\npriority = \"{prio}\"\n"
                ));
            } else {
                t.push_str(&format!(
                    "\n[[links]]\nname = \"l{l}\"\nkind = \"udp\"\nport = 5000\npriority = \"{prio}\"\n"
                ));
            }
        }
        for i in 0..self.nodes {
            let addrs: Vec<String> = self
                .links
                .iter()
                .enumerate()
                .map(|(l, link)| {
                    if link.ether {
                        format!("l{l} = \"sim{l}\"")
                    } else {
                        format!("l{l} = \"10.0.{l}.{}\"", u32::from(i) + 1)
                    }
                })
                .collect();
            t.push_str(&format!(
                "\n[[nodes]]\nid = {i}\nname = \"n{i}\"\nlinks = {{ {} }}\n",
                addrs.join(", ")
            ));
        }
        let (interval, timeout, threshold) = self.probe;
        let on = match self.on_failure {
            OnFailure::Leave => "leave",
            OnFailure::Fence => "fence",
        };
        t.push_str(&format!(
            "\n[[probes]]\nname = \"{SIM_PROBE}\"\nkind = \"mount\"\npath = \"/\"\n\
             interval = {interval}\ntimeout = {timeout}\nthreshold = {threshold}\n\
             on_failure = \"{on}\"\n"
        ));
        t
    }

    /// Write the file, parse and validate it as the daemon would.
    fn build(&self, profile: Profile) -> Result<SimConfig, String> {
        let text = self.text(false);
        let mut cluster = ClusterConfig::parse(&self.text(true), Path::new("sim.toml"))
            .map_err(|e| e.to_string())?;
        if self.keyed {
            cluster.cluster.insecure = false;
            cluster.cluster.key = Some(FrameKey::from_material(b"vigil sim cluster key"));
            cluster.validate().map_err(|e| e.to_string())?;
        }
        Ok(SimConfig {
            profile,
            text,
            keyed: self.keyed,
            cluster,
        })
    }
}

/// The config a drill of `nodes` nodes runs with. `seed` (default: every node),
/// `on_failure` and `stall_action` are the scenario's; `Random` draws everything
/// else (and the seed count, unless given) from `rng_seed`.
pub fn sim_config(
    profile: Profile,
    nodes: u8,
    seed: Option<usize>,
    on_failure: OnFailure,
    stall_action: StallAction,
    rng_seed: u64,
) -> Result<SimConfig, String> {
    let n = nodes;
    let shipped = |name: &'static str, hb_ms: u64| Draw {
        nodes: n,
        seed: seed.unwrap_or(usize::from(n)),
        timers: TimerDraw::Profile(name),
        drift_ppm: None,
        links: (0..2)
            .map(|_| LinkDraw {
                high: true,
                ether: false,
            })
            .collect(),
        keyed: true,
        stall_action,
        probe: (hb_ms * 2, hb_ms, 2),
        on_failure,
    };
    match profile {
        Profile::Legacy => legacy_config(n, seed, Timers::default(), on_failure, stall_action),
        Profile::Default => shipped("default", 100).build(profile),
        Profile::Fast => shipped("fast", 10).build(profile),
        Profile::Random => {
            let mut rng = StdRng::seed_from_u64(rng_seed ^ 0xc0f1_6c0f_16c0_f16c);
            let mut last = String::new();
            for _ in 0..MAX_DRAWS {
                let d = random_draw(&mut rng, n, seed, on_failure, stall_action);
                match d.build(profile) {
                    Ok(c) => return Ok(c),
                    Err(e) => last = e,
                }
            }
            Err(format!(
                "no valid config in {MAX_DRAWS} draws; the last: {last}"
            ))
        }
    }
}

/// The legacy config for `timers`: two high-priority UDP links, no key, the
/// lowpri heartbeat twice the heartbeat, `stall_report` half of it, and a probe
/// every two heartbeats that answers within one, failing after two misses.
pub fn legacy_config(
    n: u8,
    seed: Option<usize>,
    t: Timers,
    on_failure: OnFailure,
    stall_action: StallAction,
) -> Result<SimConfig, String> {
    let ms = |d: Duration| d.as_millis() as u64;
    let hb = ms(t.heartbeat);
    Draw {
        nodes: n,
        seed: seed.unwrap_or(usize::from(n)),
        timers: TimerDraw::Explicit {
            heartbeat: hb,
            heartbeat_lowpri: hb * 2,
            peer_trouble: ms(t.peer_trouble),
            peer_inactive: ms(t.peer_inactive),
            link_up_count: 3,
            race_timeout: ms(t.race_timeout),
            lease: ms(t.lease),
            stall_report: (hb / 2).max(1),
        },
        drift_ppm: Some(t.max_drift_ppm),
        links: (0..2)
            .map(|_| LinkDraw {
                high: true,
                ether: false,
            })
            .collect(),
        keyed: false,
        stall_action,
        probe: (hb * 2, hb, 2),
        on_failure,
    }
    .build(Profile::Legacy)
}

/// A random config. Every value is within what validation accepts (a draw that
/// breaks a rule between values is drawn again by the caller); the ratios between
/// timers are kept to what a drill can afford to simulate (peer_inactive at most
/// 14 heartbeats, a race at most 5).
fn random_draw(
    rng: &mut StdRng,
    n: u8,
    seed: Option<usize>,
    on_failure: OnFailure,
    stall_action: StallAction,
) -> Draw {
    // Heartbeat log-uniform from 1 to 500 ms.
    let heartbeat = (rng.gen_range(0.0f64..500f64.ln()).exp().round() as u64).max(1);
    let h = heartbeat;
    let heartbeat_lowpri = h + rng.gen_range(0..=3 * h);
    let peer_trouble = heartbeat_lowpri + rng.gen_range(1..=4 * h);
    let peer_inactive = peer_trouble + rng.gen_range(1..=6 * h);
    let race_timeout = h + rng.gen_range(1..=4 * h);
    let lease = rng.gen_range((3 * h).min(peer_inactive)..=peer_inactive);
    let stall_report = rng.gen_range(1..lease.max(2));
    let link_count = rng.gen_range(1..=4);
    let links: Vec<LinkDraw> = (0..link_count)
        .map(|_| LinkDraw {
            high: rng.gen_bool(0.7),
            ether: rng.gen_bool(0.3),
        })
        .collect();
    let majority = usize::from(n) / 2 + 1;
    let seed = seed.unwrap_or_else(|| rng.gen_range(majority..=usize::from(n).max(majority)));
    let drift_ppm = [0, 10, 100, 1000, 10_000, 100_000][rng.gen_range(0..6)];
    // The probe: every 1 to 10 heartbeats, answering within 1 to 4 heartbeats.
    let interval = h * rng.gen_range(1..=10);
    let timeout = h * rng.gen_range(1..=4);
    let threshold = rng.gen_range(1..=4);
    Draw {
        nodes: n,
        seed,
        timers: TimerDraw::Explicit {
            heartbeat,
            heartbeat_lowpri,
            peer_trouble,
            peer_inactive,
            link_up_count: rng.gen_range(1..=5),
            race_timeout,
            lease,
            stall_report,
        },
        drift_ppm: Some(drift_ppm),
        links,
        keyed: rng.gen_bool(0.5),
        stall_action,
        probe: (interval, timeout, threshold),
        on_failure,
    }
}
