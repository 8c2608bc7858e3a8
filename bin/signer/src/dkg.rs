//! `dkg join`, `refresh`, `repair help` and `repair recover`: this signer's side of the
//! key ceremonies over a shared USB directory.
//!
//! The [`custody_threshold::Keygen`] and [`custody_threshold::Repair`] state machines live
//! in memory only, so a whole ceremony runs in one process: write our envelope files,
//! wait for the others', continue, and store the key share at the end. Each completed
//! ceremony writes a ceremony record (see [`crate::record`]) to the USB directory.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver, SealParams};
use custody_airgap::file::{
    envelope_file_name, list_complete, read_bounded, write_new, ENVELOPE_EXTENSION,
};
use custody_keystore::Keystore;
use custody_threshold::{
    CeremonyError, CeremonyKind, CeremonyMessage, CeremonyPlan, GroupKey, Identity, KeyShare,
    Keygen, KeygenOutput, KeygenRound1, MessageKind, ParticipantIndex, Repair, BROADCAST,
};
use rand_core::OsRng;
use serde_json::json;

use crate::config::{Ceremony, Config};
use crate::home::{create_private_dir, passphrase, Home, GROUP_FILE, TRANSCRIPT_FILE};
use crate::output::Output;
use crate::record::{self, RecordKind};
use crate::{now, Refused, ENVELOPE_LIFETIME_SECS};

fn aborted(e: CeremonyError) -> anyhow::Error {
    Refused(format!(
        "the ceremony was aborted: {e}; keep the USB files for the investigation and start over with a new plan"
    ))
    .into()
}

/// Writes our messages as envelope files and reads everyone else's.
struct Exchange<'a> {
    plan: &'a CeremonyPlan,
    identity: &'a Identity,
    me: ParticipantIndex,
    usb: &'a Path,
    sequence: u64,
    seen: HashSet<PathBuf>,
    receiver: Receiver<'a, MemoryReplayGuard>,
    inbox: Vec<CeremonyMessage>,
    /// The envelope bytes of every broadcast message, by kind and sender (ours included),
    /// for the ceremony record.
    broadcasts: BTreeMap<(MessageKind, ParticipantIndex), Vec<u8>>,
    out: &'a Output,
}

impl Exchange<'_> {
    fn name_of(&self, index: ParticipantIndex) -> String {
        self.plan
            .participant(index)
            .map_or_else(|| format!("#{index}"), |c| c.name().to_owned())
    }

    fn send(&mut self, messages: &[CeremonyMessage]) -> Result<()> {
        for msg in messages {
            self.sequence += 1;
            let created_at = now();
            let env = Envelope::seal(
                self.identity,
                &SealParams {
                    kind: EnvelopeType::CeremonyMessage,
                    session_id: *self.plan.ceremony_id(),
                    sequence: self.sequence,
                    created_at,
                    expires_at: created_at + ENVELOPE_LIFETIME_SECS,
                    recipients: &[],
                },
                &msg.encode(),
                &mut OsRng,
            )
            .context("cannot seal our ceremony message; this is a bug, report it")?;
            let recipient = (msg.recipient() != BROADCAST).then(|| self.name_of(msg.recipient()));
            if msg.recipient() == BROADCAST {
                self.broadcasts.insert((msg.kind(), self.me), env.encode());
            }
            let name = envelope_file_name(
                env.header(),
                msg.kind().name(),
                &self.name_of(self.me),
                recipient.as_deref(),
            );
            let path = write_new(self.usb, &name, &env.encode()).with_context(|| {
                format!(
                    "cannot write {name} to {}; if it already exists this plan was used before: start over with a new plan",
                    self.usb.display()
                )
            })?;
            self.seen.insert(path.clone());
            self.out.note(&format!("wrote {}", path.display()));
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<()> {
        let files = list_complete(self.usb).with_context(|| {
            format!(
                "cannot list {}; check that the USB stick is still mounted",
                self.usb.display()
            )
        })?;
        for path in files {
            if !self.seen.insert(path.clone()) {
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some(ENVELOPE_EXTENSION) {
                continue;
            }
            let bytes = read_bounded(&path)
                .with_context(|| format!("cannot read {}; check the USB stick", path.display()))?;
            let Ok(env) = Envelope::decode(&bytes) else {
                self.out
                    .note(&format!("ignoring {}: not an envelope", path.display()));
                continue;
            };
            if env.header().session_id != *self.plan.ceremony_id()
                || env.header().sender == *self.identity.card().signing_key()
            {
                continue;
            }
            let opened =
                match self
                    .receiver
                    .open(&bytes, Some(EnvelopeType::CeremonyMessage), now())
                {
                    Ok(o) => o,
                    Err(e) => {
                        self.out.note(&format!("ignoring {}: {e}", path.display()));
                        continue;
                    }
                };
            match CeremonyMessage::decode(&opened.payload) {
                Ok(m) => {
                    if m.recipient() == BROADCAST
                        && self.plan.participant(m.sender()).map(|c| *c.signing_key())
                            == Some(opened.header.sender)
                    {
                        self.broadcasts
                            .entry((m.kind(), m.sender()))
                            .or_insert_with(|| bytes.clone());
                    }
                    self.inbox.push(m);
                }
                Err(e) => self.out.note(&format!("ignoring {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// Waits until the message of `kind` addressed to us (or to everyone) from each of
    /// `from` (we are skipped) is in, and returns one per sender.
    fn wait_for(
        &mut self,
        kind: MessageKind,
        from: &[ParticipantIndex],
        deadline: Instant,
        poll: Duration,
    ) -> Result<Vec<CeremonyMessage>> {
        let others: Vec<ParticipantIndex> =
            from.iter().copied().filter(|&i| i != self.me).collect();
        loop {
            self.poll()?;
            let mut got: BTreeMap<ParticipantIndex, &CeremonyMessage> = BTreeMap::new();
            for m in &self.inbox {
                if m.kind() == kind
                    && m.sender() != self.me
                    && (m.recipient() == self.me || m.recipient() == BROADCAST)
                {
                    got.entry(m.sender()).or_insert(m);
                }
            }
            let missing: Vec<ParticipantIndex> = others
                .iter()
                .copied()
                .filter(|i| !got.contains_key(i))
                .collect();
            if missing.is_empty() {
                self.out
                    .note(&format!("{}: received from everyone", kind.name()));
                return Ok(got.into_values().cloned().collect());
            }
            if Instant::now() >= deadline {
                let names: Vec<String> = missing.iter().map(|&i| self.name_of(i)).collect();
                bail!(
                    "timed out waiting for {} messages from {}; check that they joined the ceremony with the same plan on the same USB directory, then start over with a new plan",
                    kind.name(),
                    names.join(", ")
                );
            }
            std::thread::sleep(poll);
        }
    }

    /// The broadcast envelopes of `kind`, in plan order.
    fn envelopes_of(&self, kind: MessageKind) -> Vec<Vec<u8>> {
        self.broadcasts
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl<'a> Exchange<'a> {
    fn new(
        plan: &'a CeremonyPlan,
        identity: &'a Identity,
        me: ParticipantIndex,
        usb: &'a Path,
        out: &'a Output,
    ) -> Self {
        Exchange {
            plan,
            identity,
            me,
            usb,
            sequence: 0,
            seen: HashSet::new(),
            receiver: Receiver::new(
                *plan.ceremony_id(),
                plan.participants(),
                None,
                MemoryReplayGuard::default(),
            ),
            inbox: Vec::new(),
            broadcasts: BTreeMap::new(),
            out,
        }
    }
}

/// Reads the plan, checks its kind with `expected`, and finds us in it.
fn plan_and_position(
    home: &Home,
    path: &Path,
    what: &str,
    expected: fn(&CeremonyKind) -> bool,
) -> Result<(CeremonyPlan, ParticipantIndex)> {
    let plan = crate::plan::read(path)?;
    if !expected(plan.kind()) {
        return Err(Refused(format!(
            "the plan is not for a {what}; ask the ceremony lead for the {what} plan"
        ))
        .into());
    }
    let (_, card) = home.card()?;
    let Some(me) = plan.position_of(&card) else {
        return Err(Refused(format!(
            "this signer ({} {}) is not a participant in the plan; check that you were given the right plan",
            card.name(),
            card.fingerprint()
        ))
        .into());
    };
    Ok((plan, me))
}

/// Runs rounds 1 to 3 of a DKG or refresh, from the started state to the certified output.
fn run_keygen(
    ex: &mut Exchange<'_>,
    identity: &Identity,
    state: KeygenRound1,
    round1: CeremonyMessage,
    kinds: [MessageKind; 3],
    deadline: Instant,
    poll: Duration,
) -> Result<KeygenOutput> {
    let everyone: Vec<ParticipantIndex> = (1..=ex.plan.len()).collect();
    ex.send(&[round1])?;
    let received = ex.wait_for(kinds[0], &everyone, deadline, poll)?;
    let (state, round2) = state
        .receive_round1(identity, &received, &mut OsRng)
        .map_err(aborted)?;
    ex.send(&round2)?;
    let received = ex.wait_for(kinds[1], &everyone, deadline, poll)?;
    let (state, certificate) = state
        .receive_round2(identity, &received, &mut OsRng)
        .map_err(aborted)?;
    ex.send(&[certificate])?;
    let received = ex.wait_for(kinds[2], &everyone, deadline, poll)?;
    state.finish(identity, &received).map_err(aborted)
}

fn copy_identity(identity: &Identity) -> Result<Identity> {
    Identity::from_secret_bytes(&identity.to_secret_bytes())
        .context("the keystore holds no valid identity; restore it from a share backup")
}

fn copy_share(share: &KeyShare) -> Result<KeyShare> {
    KeyShare::from_secret_bytes(&share.to_secret_bytes())
        .context("the keystore holds no valid key share; restore it from a share backup")
}

/// `dkg join`.
pub(crate) fn join(config: &Config, home: &Home, c: &Ceremony, out: &Output) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let (plan, me) = plan_and_position(home, &c.plan, "key generation", |k| {
        matches!(k, CeremonyKind::Dkg)
    })?;
    if home.has_share() {
        bail!(
            "{} already holds a key share; use a fresh --home for a new key (shares are never replaced)",
            home.dir().display()
        );
    }
    let (data, text) = crate::plan::summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;

    let mut ex = Exchange::new(&plan, &identity, me, &c.usb, out);
    let (state, round1) = Keygen::start_dkg(&plan, &identity, &mut OsRng).map_err(aborted)?;
    let kinds = [
        MessageKind::DkgRound1,
        MessageKind::DkgRound2,
        MessageKind::DkgCertificate,
    ];
    let output = run_keygen(&mut ex, &identity, state, round1, kinds, deadline, c.poll)?;
    let certificates = ex.envelopes_of(MessageKind::DkgCertificate);
    drop(ex);

    let group = output.share.group().clone();
    let transcript = hex::encode(output.transcript_hash);
    let dir = home.keystore_dir();
    create_private_dir(&dir)?;
    Keystore::create(&dir, output.share, identity, &pass, config.encryption, &mut OsRng)
        .with_context(|| {
            format!(
                "cannot store the key share in {}; the other participants may have theirs: do not discard this ceremony until the problem is fixed",
                dir.display()
            )
        })?;
    write_new(home.dir(), GROUP_FILE, &group.encode())
        .context("cannot store the group key in the signer home; check the disk")?;
    write_new(
        home.dir(),
        TRANSCRIPT_FILE,
        format!("{transcript}\n").as_bytes(),
    )
    .context("cannot store the transcript hash in the signer home; check the disk")?;
    home.append_history(plan.ceremony_id(), "dkg", Some(&output.transcript_hash))?;
    let record_path = record::write(
        &c.usb,
        &plan,
        RecordKind::Dkg,
        Some(&output.transcript_hash),
        &certificates,
        &group,
        &card_name(&plan, me),
    )?;
    out.record(
        "dkg-complete",
        json!({
            "group_xpub": group.xpub().to_string(),
            "group_fingerprint": group.fingerprint().to_string(),
            "transcript_hash": transcript,
            "threshold": group.threshold(),
            "participants": group.participants(),
            "network": group.network().to_string(),
            "participant_index": me,
            "record": record_path.display().to_string(),
        }),
        &format!(
            "key share stored in {}\ngroup xpub: {}\ntranscript hash: {transcript}\nceremony record: {}",
            dir.display(),
            group.xpub(),
            record_path.display()
        ),
    )
}

fn card_name(plan: &CeremonyPlan, me: ParticipantIndex) -> String {
    plan.participant(me)
        .map_or_else(|| format!("#{me}"), |c| c.name().to_owned())
}

/// `refresh`: new shares of the same group key; the old share is replaced and the nonce
/// seed renewed, so every commitment issued before is dead.
pub(crate) fn refresh(config: &Config, home: &Home, c: &Ceremony, out: &Output) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let (plan, me) = plan_and_position(home, &c.plan, "refresh", |k| {
        matches!(k, CeremonyKind::Refresh { .. })
    })?;
    let group = home.group()?;
    if let CeremonyKind::Refresh { group_key } = plan.kind() {
        if *group_key != group.public_key() {
            return Err(Refused(
                "the refresh plan is for another group key than this signer's; check that you were given the right plan".into(),
            )
            .into());
        }
    }
    let (data, text) = crate::plan::summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let (identity, share) = {
        let ks = home.open_keystore(&pass)?;
        (copy_identity(ks.identity())?, copy_share(ks.share())?)
    };
    let mut ex = Exchange::new(&plan, &identity, me, &c.usb, out);
    let (state, round1) =
        Keygen::start_refresh(&plan, &identity, share, &mut OsRng).map_err(aborted)?;
    let kinds = [
        MessageKind::RefreshRound1,
        MessageKind::RefreshRound2,
        MessageKind::RefreshCertificate,
    ];
    let output = run_keygen(&mut ex, &identity, state, round1, kinds, deadline, c.poll)?;
    let certificates = ex.envelopes_of(MessageKind::RefreshCertificate);
    drop(ex);

    let new_group = output.share.group().clone();
    if new_group.public_key() != group.public_key() || new_group.xpub() != group.xpub() {
        bail!("the refreshed share belongs to another group key; this is a bug, report it (the old share was kept)");
    }
    let staged = home.stage_keystore()?;
    Keystore::create(&staged, output.share, identity, &pass, config.encryption, &mut OsRng)
        .with_context(|| {
            format!(
                "cannot store the refreshed share in {}; the old share was kept: abort the refresh and tell the others",
                staged.display()
            )
        })?;
    home.swap_keystore()?;
    home.replace_file(GROUP_FILE, &new_group.encode())?;
    let transcript = hex::encode(output.transcript_hash);
    home.replace_file(TRANSCRIPT_FILE, format!("{transcript}\n").as_bytes())?;
    home.append_history(plan.ceremony_id(), "refresh", Some(&output.transcript_hash))?;
    let record_path = record::write(
        &c.usb,
        &plan,
        RecordKind::Refresh,
        Some(&output.transcript_hash),
        &certificates,
        &new_group,
        &card_name(&plan, me),
    )?;
    out.record(
        "refresh-complete",
        json!({
            "group_xpub": new_group.xpub().to_string(),
            "transcript_hash": transcript,
            "participant_index": me,
            "nonce_seed_renewed": true,
            "record": record_path.display().to_string(),
        }),
        &format!(
            "the old share was replaced by the refreshed share in {}\nnew nonce seed drawn: commitments issued before the refresh can never be answered; issue new ones\ngroup xpub (unchanged): {}\ntranscript hash: {transcript}\nceremony record: {}",
            home.keystore_dir().display(),
            new_group.xpub(),
            record_path.display()
        ),
    )
}

fn repair_params(
    plan: &CeremonyPlan,
) -> Result<([u8; 33], ParticipantIndex, Vec<ParticipantIndex>)> {
    match plan.kind() {
        CeremonyKind::Repair {
            group_key,
            lost,
            helpers,
        } => Ok((*group_key, *lost, helpers.clone())),
        _ => bail!("not a repair plan"),
    }
}

/// `repair help`.
pub(crate) fn repair_help(
    config: &Config,
    home: &Home,
    lost_name: &str,
    c: &Ceremony,
    out: &Output,
) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let (plan, me) = plan_and_position(home, &c.plan, "repair", |k| {
        matches!(k, CeremonyKind::Repair { .. })
    })?;
    let (group_key, lost, helpers) = repair_params(&plan)?;
    let plan_lost = card_name(&plan, lost);
    if plan_lost != lost_name {
        return Err(Refused(format!(
            "the plan repairs the share of {plan_lost}, not of {lost_name}; check the plan and --lost"
        ))
        .into());
    }
    if !helpers.contains(&me) {
        return Err(Refused(
            "the plan does not name this signer as a helper; check that you were given the right plan".into(),
        )
        .into());
    }
    if home.group()?.public_key() != group_key {
        return Err(Refused(
            "the repair plan is for another group key than this signer's; check the plan".into(),
        )
        .into());
    }
    let (data, text) = crate::plan::summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let ks = home.open_keystore(&pass)?;
    let identity = copy_identity(ks.identity())?;
    let mut ex = Exchange::new(&plan, &identity, me, &c.usb, out);
    let (state, deltas) =
        Repair::start_helper(&plan, &identity, ks.share(), &mut OsRng).map_err(aborted)?;
    drop(ks);
    ex.send(&deltas)?;
    let received = ex.wait_for(MessageKind::RepairDelta, &helpers, deadline, c.poll)?;
    let sigma = state
        .receive_deltas(&identity, &received, &mut OsRng)
        .map_err(aborted)?;
    ex.send(&[sigma])?;
    out.record(
        "repair-helped",
        json!({"lost": plan_lost, "participant_index": me}),
        &format!(
            "sent our repair message for {plan_lost}; they now run `repair recover` and write the ceremony record"
        ),
    )
}

/// `repair recover`.
pub(crate) fn repair_recover(
    config: &Config,
    home: &Home,
    group_file: Option<&Path>,
    c: &Ceremony,
    out: &Output,
) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let (plan, me) = plan_and_position(home, &c.plan, "repair", |k| {
        matches!(k, CeremonyKind::Repair { .. })
    })?;
    let (group_key, lost, helpers) = repair_params(&plan)?;
    if me != lost {
        return Err(Refused(format!(
            "the plan repairs the share of {}, not this signer's; helpers run `repair help`",
            card_name(&plan, lost)
        ))
        .into());
    }
    if home.has_share() {
        bail!(
            "{} still holds a key share; a repair is only for a lost share (move the damaged keystore directory aside first)",
            home.dir().display()
        );
    }
    let group = match group_file {
        Some(p) => {
            let bytes = read_bounded(p)
                .with_context(|| format!("cannot read {}; check the path", p.display()))?;
            GroupKey::decode(&bytes).with_context(|| {
                format!(
                    "{} is not a group key; copy group.key from another signer home",
                    p.display()
                )
            })?
        }
        None => home.group().context(
            "the group key is lost too: pass --group FILE with group.key from another signer home",
        )?,
    };
    if group.public_key() != group_key {
        return Err(Refused(
            "the repair plan is for another group key than the one given; check the plan and --group".into(),
        )
        .into());
    }
    let (data, text) = crate::plan::summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;
    let mut ex = Exchange::new(&plan, &identity, me, &c.usb, out);
    let received = ex.wait_for(MessageKind::RepairSigma, &helpers, deadline, c.poll)?;
    drop(ex);
    let share = Repair::recover(&plan, &identity, &group, &received).map_err(aborted)?;

    // A confirmation that we hold a share of this group, signed by our identity: the
    // certificate of the repair record.
    let created_at = now();
    let confirmation = Envelope::seal(
        &identity,
        &SealParams {
            kind: EnvelopeType::GroupKey,
            session_id: *plan.ceremony_id(),
            sequence: 1,
            created_at,
            expires_at: created_at + ENVELOPE_LIFETIME_SECS,
            recipients: &[],
        },
        &group.encode(),
        &mut OsRng,
    )
    .context("cannot seal the repair confirmation; this is a bug, report it")?;

    let staged = home.stage_keystore()?;
    Keystore::create(
        &staged,
        share,
        identity,
        &pass,
        config.encryption,
        &mut OsRng,
    )
    .with_context(|| format!("cannot store the repaired share in {}", staged.display()))?;
    home.swap_keystore()?;
    home.replace_file(GROUP_FILE, &group.encode())?;
    home.append_history(plan.ceremony_id(), "repair", None)?;
    let transcript = home
        .known_transcripts()
        .last()
        .and_then(|t| hex::decode(t).ok())
        .and_then(|t| <[u8; 32]>::try_from(t).ok());
    let record_path = record::write(
        &c.usb,
        &plan,
        RecordKind::Repair,
        transcript.as_ref(),
        &[confirmation.encode()],
        &group,
        &card_name(&plan, me),
    )?;
    out.record(
        "repair-complete",
        json!({
            "group_xpub": group.xpub().to_string(),
            "participant_index": me,
            "nonce_seed_renewed": true,
            "record": record_path.display().to_string(),
        }),
        &format!(
            "the repaired share is stored in {}\nnew nonce seed drawn: issue new commitments\ngroup xpub: {}\nceremony record: {}",
            home.keystore_dir().display(),
            group.xpub(),
            record_path.display()
        ),
    )
}
