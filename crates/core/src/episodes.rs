//! Verdicts grouped into episodes, so that a fault is reported as one story rather than as
//! one alert per key range and window.
//!
//! An episode is identified by (replica, table, kind); replica-wide kinds (a replica's lag)
//! have no table. The first verdict of an identity opens its episode; later verdicts of the
//! same identity are absorbed into it. A `Recovered` verdict closes the episode it names:
//! a data mismatch episode closes once every key range it saw has recovered. Episodes of
//! poison events and unverified spans have no recovery and close after a quiet period.
//!
//! Root cause first: a data mismatch on a table whose schema drifted, or whose stream is
//! silent, is a consequence of that fault, not a fault of its own. It is counted in the root
//! cause's episode and opens none. A replica's lag explains no mismatch: windows are compared
//! at equal positions, so a lagging replica's mismatch is a fault of its data.
//!
//! Every event of an episode carries the same key, chosen when it opens, so that a compacted
//! topic keeps each episode's latest state and a redelivered event overwrites itself.
//! Updates are throttled: at most one per episode per `update_interval_ms`, and only when
//! something changed since the episode's last event.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::envelope::Position;
use crate::time::format_utc;
use crate::verdict::{Divergence, Finding, KeyDiff, Kind, Mismatch, Recovery};

/// How episodes are reported, in milliseconds of the verifier's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct EpisodeConfig {
    /// The least time between two events of one episode, other than its close.
    pub update_interval_ms: i64,
    /// How many of the keys its mismatches name an episode keeps as examples.
    pub sample_keys: usize,
    /// A poison or unverified episode with no new verdict for this long is closed: nothing
    /// else tells that it ended.
    pub poison_quiet_ms: i64,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            update_interval_ms: 30_000,
            sample_keys: 10,
            poison_quiet_ms: 300_000,
        }
    }
}

/// Where an episode is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Open,
    Update,
    Close,
}

/// What the episodes report: an episode opened, changed or closed, with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeEvent {
    pub phase: Phase,
    /// The same for every event of one episode: `<replica>/<table or *>/<kind>/<anchor>`,
    /// the anchor naming the verdict that opened it (see [`EpisodeState::summary`]).
    pub key: String,
    pub episode: EpisodeState,
}

/// An episode as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeState {
    pub replica: String,
    /// None for a replica-wide episode (a replica's lag, a span of several tables).
    pub table: Option<String>,
    pub kind: Kind,
    /// The time of the verdict that opened it.
    pub opened_at_ms: i64,
    /// The time of its latest verdict.
    pub last_at_ms: i64,
    /// When it closed, for a closed episode.
    pub closed_at_ms: Option<i64>,
    /// The first and last positions its verdicts' windows hold, where they carry any.
    pub first_position: Option<Position>,
    pub last_position: Option<Position>,
    /// Verdicts of its own kind absorbed.
    pub verdicts: u64,
    /// Distinct key ranges its mismatches (its own or its consequences) named.
    pub ranges: u64,
    /// Of those, the ranges not yet recovered.
    pub unrecovered_ranges: u64,
    /// Windows its verdicts were concluded in (in window order: one older than the newest
    /// counted is not counted again).
    pub windows: u64,
    /// Keys its mismatches named (a key named by two verdicts counts twice).
    pub keys: u64,
    /// Some of those keys, as JSON, each once.
    pub sample_keys: Vec<String>,
    /// The keys found to differ, with both sides' rows and positions.
    #[serde(default)]
    pub named_keys: Vec<KeyDiff>,
    /// More keys differ than are named.
    #[serde(default)]
    pub keys_truncated: bool,
    /// Data mismatches this episode explains, by table: verdicts that opened no episode of
    /// their own because this fault came first.
    pub consequences: BTreeMap<String, u64>,
    /// The account of its latest verdict of its own kind.
    pub latest: String,
}

impl EpisodeState {
    /// One line an on-call engineer can act on: what, where, since when, how much, and what
    /// follows from it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} on {} {}: {}",
            self.kind,
            self.replica,
            self.table.as_deref().unwrap_or("(all tables)"),
            self.span()
        );
        s.push_str(&format!(
            "; {} verdicts over {} windows",
            self.verdicts, self.windows
        ));
        if let (Some(first), Some(last)) = (self.first_position, self.last_position) {
            s.push_str(&format!(", positions {first}..{last}"));
        }
        let explained: u64 = self.consequences.values().sum();
        if explained > 0 {
            let tables: Vec<String> = self
                .consequences
                .iter()
                .map(|(t, n)| format!("{n} on {t}"))
                .collect();
            s.push_str(&format!(
                "; explains {explained} DataMismatch verdicts ({})",
                tables.join(", ")
            ));
        }
        if self.ranges > 0 {
            s.push_str(&format!(
                "; {} key ranges, {} not back in line",
                self.ranges, self.unrecovered_ranges
            ));
        }
        if self.keys > 0 {
            s.push_str(&format!(
                "; {} keys named, e.g. {}",
                self.keys,
                self.sample_keys.join(", ")
            ));
        }
        if !self.latest.is_empty() {
            s.push_str(&format!("; latest: {}", self.latest));
        }
        s
    }

    /// Since when it has been open, or when it opened and closed.
    fn span(&self) -> String {
        let opened = format_utc(self.opened_at_ms);
        match self.closed_at_ms {
            Some(closed) => format!(
                "from {opened} to {} ({} s)",
                format_utc(closed),
                closed.saturating_sub(self.opened_at_ms) / 1000
            ),
            None => format!(
                "open since {opened}, last seen {}",
                format_utc(self.last_at_ms)
            ),
        }
    }
}

/// What an episode is of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Identity {
    replica: String,
    table: Option<String>,
    kind: Kind,
}

impl Identity {
    fn new(replica: &str, table: Option<&str>, kind: Kind) -> Self {
        Identity {
            replica: replica.to_string(),
            table: table.map(str::to_string),
            kind,
        }
    }
}

/// An open episode as another verifier instance continues it (after a restart, or when its
/// table is handed over): its key, its state and the ranges behind its counts.
#[derive(Serialize, Deserialize)]
struct Saved {
    key: String,
    state: EpisodeState,
    #[serde(default)]
    ranges: BTreeSet<(String, u64)>,
    #[serde(default)]
    unrecovered: BTreeSet<(String, u64)>,
    #[serde(default)]
    newest_window: Option<i64>,
}

/// An open episode: its state and what is needed to keep it.
struct Episode {
    key: String,
    state: EpisodeState,
    /// (table, range index) of every range named, and of those not yet recovered.
    ranges: BTreeSet<(String, u64)>,
    unrecovered: BTreeSet<(String, u64)>,
    /// The newest window counted: verdicts come in window order, so a window is new when it
    /// is later than that (kept as one id, not a set: an episode may last for days).
    newest_window: Option<i64>,
    /// Something changed since its last event.
    changed: bool,
    /// The clock at its last event.
    reported_at_ms: i64,
}

impl Episode {
    /// An open episode as [`Episodes::saved`] gave it (`None`: a closed one).
    fn saved(saved: &str) -> Result<Option<Episode>, serde_json::Error> {
        let s: Saved = serde_json::from_str(saved)?;
        if s.state.closed_at_ms.is_some() {
            return Ok(None);
        }
        Ok(Some(Episode {
            key: s.key,
            reported_at_ms: s.state.last_at_ms,
            state: s.state,
            ranges: s.ranges,
            unrecovered: s.unrecovered,
            newest_window: s.newest_window,
            changed: false,
        }))
    }

    /// The episode `d` opens.
    fn open(id: &Identity, d: &Divergence, owner: Option<&str>) -> Self {
        let mut key = format!(
            "{}/{}/{}/{}",
            id.replica,
            id.table.as_deref().unwrap_or("*"),
            id.kind,
            anchor(d)
        );
        // A replica's lag is one episode for the whole group (see [`Episodes::owned_by`]).
        if let (None, Some(owner), false) = (&id.table, owner, id.kind == Kind::ReplicaLag) {
            key.push('@');
            key.push_str(owner);
        }
        let state = EpisodeState {
            replica: id.replica.clone(),
            table: id.table.clone(),
            kind: id.kind,
            opened_at_ms: d.detected_at_ms,
            last_at_ms: d.detected_at_ms,
            closed_at_ms: None,
            first_position: None,
            last_position: None,
            verdicts: 0,
            ranges: 0,
            unrecovered_ranges: 0,
            windows: 0,
            keys: 0,
            sample_keys: Vec::new(),
            named_keys: Vec::new(),
            keys_truncated: false,
            consequences: BTreeMap::new(),
            latest: String::new(),
        };
        Episode {
            key,
            state,
            ranges: BTreeSet::new(),
            unrecovered: BTreeSet::new(),
            newest_window: None,
            changed: false,
            reported_at_ms: d.detected_at_ms,
        }
    }

    /// Counts `d`, of the episode's own kind or a data mismatch it explains.
    fn absorb(&mut self, d: &Divergence, sample_keys: usize) {
        let s = &mut self.state;
        s.last_at_ms = s.last_at_ms.max(d.detected_at_ms);
        if d.kind() == s.kind {
            s.verdicts += 1;
            s.latest = d.summary();
        } else if let Some(table) = d.table() {
            *s.consequences.entry(table.to_string()).or_default() += 1;
        }
        if let Some(w) = d.window() {
            if self.newest_window.is_none_or(|n| w.id > n) {
                self.newest_window = Some(w.id);
                s.windows += 1;
            }
            s.first_position = Some(s.first_position.map_or(w.first, |p| p.min(w.first)));
            s.last_position = Some(s.last_position.map_or(w.last, |p| p.max(w.last)));
        }
        if let Some(m) = d.mismatch() {
            self.name_range(m, sample_keys);
        }
        self.changed = true;
    }

    /// Records a mismatch's range as divergent and the keys it names.
    fn name_range(&mut self, m: &Mismatch, sample_keys: usize) {
        let range = (m.table.clone(), m.range.index);
        self.ranges.insert(range.clone());
        self.unrecovered.insert(range);
        let s = &mut self.state;
        s.ranges = self.ranges.len() as u64;
        s.unrecovered_ranges = self.unrecovered.len() as u64;
        s.keys += m.keys.len() as u64;
        for k in &m.keys {
            if s.sample_keys.len() >= sample_keys {
                break;
            }
            let text = k.key.to_string();
            if !s.sample_keys.contains(&text) {
                s.sample_keys.push(text);
            }
        }
    }

    /// Marks a range recovered; whether the episode held it as divergent.
    fn recover_range(&mut self, range: &(String, u64)) -> bool {
        let held = self.unrecovered.remove(range);
        if held {
            self.state.unrecovered_ranges = self.unrecovered.len() as u64;
            self.changed = true;
        }
        held
    }

    /// The event reporting the episode as it stands, which clears its change.
    fn event(&mut self, phase: Phase, now_ms: i64) -> EpisodeEvent {
        self.changed = false;
        self.reported_at_ms = now_ms;
        EpisodeEvent {
            phase,
            key: self.key.clone(),
            episode: self.state.clone(),
        }
    }

    /// The event closing the episode.
    fn close(mut self, now_ms: i64) -> EpisodeEvent {
        self.state.closed_at_ms = Some(now_ms);
        self.event(Phase::Close, now_ms)
    }

    /// Whether it ends by going quiet rather than by a recovery.
    fn ends_quietly(&self) -> bool {
        matches!(self.state.kind, Kind::PoisonEvent | Kind::Unverified)
    }
}

/// What distinguishes the verdict that opens an episode from other openings of the same
/// identity: its window, the poison record's coordinates, the replica's position, or else
/// its time. Taken from the verdict so that the same verdicts give the same keys.
fn anchor(d: &Divergence) -> String {
    if let Some(w) = d.window() {
        return format!("w{}", w.id);
    }
    if let Some(p) = d.poison() {
        return format!("{}:{}:{}", p.topic, p.partition, p.offset);
    }
    if let Some(lag) = d.lag() {
        return format!("p{}", lag.replica_position);
    }
    format!("t{}", d.detected_at_ms)
}

/// Groups verdicts into episodes and reports their openings, changes and closes.
///
/// Feed it every verdict in order with [`Episodes::observe`], and call [`Episodes::tick`]
/// with the verifier's clock (at least every `update_interval_ms`) for throttled updates and
/// quiet closes.
pub struct Episodes {
    cfg: EpisodeConfig,
    open: BTreeMap<Identity, Episode>,
    /// Whose replica-wide episodes these are, when several instances each judge them.
    owner: Option<String>,
}

impl Episodes {
    pub fn new(cfg: EpisodeConfig) -> Self {
        Episodes {
            cfg,
            open: BTreeMap::new(),
            owner: None,
        }
    }

    /// Instances sharing the tables each tell what concerns none of their tables on their own:
    /// their replica-wide episodes are their own, keyed `<replica>/*/<kind>/<anchor>@<instance>`
    /// so that two instances' episodes do not overwrite each other on a compacted topic. Not a
    /// replica's lag: every instance judges it on its own tables, and one of them (the holder
    /// of shard 0) tells it for all, under the key one instance would give it, which the next
    /// holder continues.
    pub fn owned_by(mut self, instance: &str) -> Self {
        self.owner = Some(instance.to_string());
        self
    }

    /// How many episodes are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The open episodes' states, in order of identity.
    pub fn open_episodes(&self) -> impl Iterator<Item = (&str, &EpisodeState)> {
        self.open.values().map(|e| (e.key.as_str(), &e.state))
    }

    /// An open episode as [`Episodes::resume`] takes it in, by its key: what a compacted
    /// alert topic keeps, so that whichever instance verifies its table next continues it
    /// under the same key instead of opening another (and leaving this one open for good).
    ///
    /// At most [`Episodes::SAVED_MAX`] bytes: beyond, without the keys it names (the record
    /// carries them, and its next holder names them again).
    pub fn saved(&self, key: &str) -> Option<String> {
        let e = self.open.values().find(|e| e.key == key)?;
        let mut saved = Saved {
            key: e.key.clone(),
            state: e.state.clone(),
            ranges: e.ranges.clone(),
            unrecovered: e.unrecovered.clone(),
            newest_window: e.newest_window,
        };
        let text = serde_json::to_string(&saved).ok()?;
        if text.len() <= Self::SAVED_MAX {
            return Some(text);
        }
        saved.state.named_keys.clear();
        serde_json::to_string(&saved).ok()
    }

    /// What [`Episodes::saved`] gives at most, with the keys named: the alert record carries
    /// it beside the episode itself, under Kafka's default 1 MB a record.
    pub const SAVED_MAX: usize = 256 << 10;

    /// Continues an episode from what [`Episodes::saved`] gave: its later verdicts count in
    /// it, and its recovery closes it. Returns its key, or `None` when an episode of its
    /// identity is open already (that one goes on) or `saved` is a closed one.
    pub fn resume(&mut self, saved: &str) -> Result<Option<&str>, serde_json::Error> {
        let Some(e) = Episode::saved(saved)? else {
            return Ok(None);
        };
        let id = Identity::new(&e.state.replica, e.state.table.as_deref(), e.state.kind);
        if self.open.contains_key(&id) {
            return Ok(None);
        }
        Ok(Some(self.open.entry(id).or_insert(e).key.as_str()))
    }

    /// The event closing an episode [`Episodes::saved`] gave, without continuing it: for an
    /// episode no verifier will continue (one an earlier version keyed by its instance).
    /// `None` for a closed one.
    pub fn close_saved(
        saved: &str,
        now_ms: i64,
    ) -> Result<Option<EpisodeEvent>, serde_json::Error> {
        Ok(Episode::saved(saved)?.map(|e| e.close(now_ms)))
    }

    /// Takes in one verdict: opens an episode, counts it in one, or closes one.
    pub fn observe(&mut self, d: &Divergence, out: &mut Vec<EpisodeEvent>) {
        match &d.finding {
            Finding::Recovered(r) => self.recover(d, r, out),
            Finding::DataMismatch(m) => match self.root_cause(&d.replica, &m.table) {
                Some(cause) => self.absorb_into(&cause, d),
                None => self.absorb_own(d, out),
            },
            _ => self.absorb_own(d, out),
        }
    }

    /// Reports the episodes that changed and were last reported `update_interval_ms` or
    /// more ago, and closes the poison and unverified episodes quiet for `poison_quiet_ms`.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<EpisodeEvent>) {
        let quiet = self.cfg.poison_quiet_ms;
        let interval = self.cfg.update_interval_ms;
        let ended: Vec<Identity> = self
            .open
            .iter()
            .filter(|(_, e)| e.ends_quietly() && now_ms.saturating_sub(e.state.last_at_ms) >= quiet)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.close(&id, now_ms, out);
        }
        for e in self.open.values_mut() {
            if e.changed && now_ms.saturating_sub(e.reported_at_ms) >= interval {
                out.push(e.event(Phase::Update, now_ms));
            }
        }
    }

    /// Where every open episode changed since its last event stands now, whatever the
    /// interval: said when the verifier stops, so that its last account is complete.
    pub fn flush(&mut self, now_ms: i64, out: &mut Vec<EpisodeEvent>) {
        for e in self.open.values_mut().filter(|e| e.changed) {
            out.push(e.event(Phase::Update, now_ms));
        }
    }

    /// The key of the open episode a verdict was counted under (a data mismatch under its
    /// table's schema drift or silence when one is open).
    pub fn episode_key(&self, d: &Divergence) -> Option<&str> {
        self.open
            .get(&self.counted_under(d)?)
            .map(|e| e.key.as_str())
    }

    /// Whether the episode a data mismatch was counted under wants more of its keys named:
    /// it names fewer than `max` and has not given up on more.
    pub fn wants_keys(&self, d: &Divergence, max: usize) -> bool {
        self.counted_under(d)
            .and_then(|id| self.open.get(&id))
            .is_some_and(|e| e.state.named_keys.len() < max && !e.state.keys_truncated)
    }

    /// Adds the keys found to differ for the mismatch `d` to the episode it was counted
    /// under, at most `max` in all (beyond, the episode says it names only some). The first
    /// keys named are reported at once; later ones with the episode's next update.
    pub fn name_keys(
        &mut self,
        d: &Divergence,
        keys: Vec<KeyDiff>,
        more: bool,
        max: usize,
        now_ms: i64,
        out: &mut Vec<EpisodeEvent>,
    ) {
        let sample_keys = self.cfg.sample_keys;
        let Some(e) = self.counted_under(d).and_then(|id| self.open.get_mut(&id)) else {
            return;
        };
        let first = e.state.named_keys.is_empty();
        let mut added = 0;
        for k in keys {
            if e.state.named_keys.iter().any(|n| n.key == k.key) {
                continue;
            }
            if e.state.named_keys.len() >= max {
                e.state.keys_truncated = true;
                break;
            }
            let text = k.key.to_string();
            if e.state.sample_keys.len() < sample_keys && !e.state.sample_keys.contains(&text) {
                e.state.sample_keys.push(text);
            }
            e.state.named_keys.push(k);
            added += 1;
        }
        e.state.keys_truncated |= more;
        if added == 0 && !more {
            return;
        }
        e.state.keys = e.state.keys.max(e.state.named_keys.len() as u64);
        e.changed = true;
        if first && added > 0 {
            out.push(e.event(Phase::Update, now_ms));
        }
    }

    /// The identity of the episode `d` is counted in.
    fn counted_under(&self, d: &Divergence) -> Option<Identity> {
        match &d.finding {
            Finding::DataMismatch(m) => Some(
                self.root_cause(&d.replica, &m.table)
                    .unwrap_or_else(|| Identity::new(&d.replica, Some(&m.table), d.kind())),
            ),
            Finding::Recovered(_) => None,
            _ => Some(Identity::new(&d.replica, d.table(), d.kind())),
        }
    }

    /// Counts `d` in the episode of its identity, opening it if none is open.
    fn absorb_own(&mut self, d: &Divergence, out: &mut Vec<EpisodeEvent>) {
        let id = Identity::new(&d.replica, d.table(), d.kind());
        let sample_keys = self.cfg.sample_keys;
        match self.open.get_mut(&id) {
            Some(e) => e.absorb(d, sample_keys),
            None => {
                let mut e = Episode::open(&id, d, self.owner.as_deref());
                e.absorb(d, sample_keys);
                out.push(e.event(Phase::Open, d.detected_at_ms));
                self.open.insert(id, e);
            }
        }
    }

    /// Counts a data mismatch in the open episode of the fault that explains it.
    fn absorb_into(&mut self, cause: &Identity, d: &Divergence) {
        let sample_keys = self.cfg.sample_keys;
        if let Some(e) = self.open.get_mut(cause) {
            e.absorb(d, sample_keys);
        }
    }

    /// The open episode whose fault explains a data mismatch of `table`: the table's schema
    /// drift, then its silence.
    fn root_cause(&self, replica: &str, table: &str) -> Option<Identity> {
        [
            Identity::new(replica, Some(table), Kind::SchemaDrift),
            Identity::new(replica, Some(table), Kind::StreamSilent),
        ]
        .into_iter()
        .find(|id| self.open.contains_key(id))
    }

    /// Closes the episode a recovery names; a recovery of no open episode is ignored.
    fn recover(&mut self, d: &Divergence, r: &Recovery, out: &mut Vec<EpisodeEvent>) {
        let at = d.detected_at_ms;
        match r {
            Recovery::DataMismatch { table, range, .. } => {
                self.recover_range(&d.replica, table, range.index, at, out)
            }
            Recovery::SchemaDrift { table, .. } | Recovery::StreamSilent { table } => {
                let id = Identity::new(&d.replica, Some(table), r.ended());
                self.close(&id, at, out);
            }
            Recovery::ReplicaLag { .. } => {
                let id = Identity::new(&d.replica, None, Kind::ReplicaLag);
                self.close(&id, at, out);
            }
        }
    }

    /// Marks a range recovered in the episode that holds it as divergent: the table's data
    /// mismatch episode, or else the fault that explained its mismatches. A data mismatch
    /// episode with no divergent range left closes.
    fn recover_range(
        &mut self,
        replica: &str,
        table: &str,
        index: u64,
        at: i64,
        out: &mut Vec<EpisodeEvent>,
    ) {
        let range = (table.to_string(), index);
        let own = Identity::new(replica, Some(table), Kind::DataMismatch);
        let holders = std::iter::once(own.clone()).chain(
            [Kind::SchemaDrift, Kind::StreamSilent]
                .map(|k| Identity::new(replica, Some(table), k))
                .into_iter()
                .chain(std::iter::once(Identity::new(
                    replica,
                    None,
                    Kind::ReplicaLag,
                ))),
        );
        for id in holders {
            let Some(e) = self.open.get_mut(&id) else {
                continue;
            };
            if !e.recover_range(&range) {
                continue;
            }
            if id == own && e.unrecovered.is_empty() {
                self.close(&id, at, out);
            }
            return;
        }
    }

    /// Closes an open episode, if it is open.
    fn close(&mut self, id: &Identity, now_ms: i64, out: &mut Vec<EpisodeEvent>) {
        if let Some(e) = self.open.remove(id) {
            out.push(e.close(now_ms));
        }
    }
}
