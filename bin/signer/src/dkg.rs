//! `dkg join`: this signer's side of the certified DKG over a shared USB directory.
//!
//! The [`custody_threshold::Keygen`] state machines live in memory only, so the whole
//! ceremony runs in one process: write our round-N envelope files, wait for everyone
//! else's, continue, and store the key share at the end.

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
    CeremonyError, CeremonyKind, CeremonyMessage, CeremonyPlan, Identity, Keygen, MessageKind,
    ParticipantIndex, BROADCAST,
};
use rand_core::OsRng;
use serde_json::json;

use crate::config::Config;
use crate::home::{create_private_dir, passphrase, Home, GROUP_FILE, TRANSCRIPT_FILE};
use crate::output::Output;
use crate::{now, Refused, ENVELOPE_LIFETIME_SECS};

fn aborted(e: CeremonyError) -> anyhow::Error {
    Refused(format!(
        "the key generation was aborted: {e}; keep the USB files for the investigation and start over with a new plan"
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
                Ok(m) => self.inbox.push(m),
                Err(e) => self.out.note(&format!("ignoring {}: {e}", path.display())),
            }
        }
        Ok(())
    }

    /// Waits until every other participant's message of `kind` addressed to us (or to
    /// everyone) is in, and returns one per sender.
    fn wait_for(
        &mut self,
        kind: MessageKind,
        deadline: Instant,
        poll: Duration,
    ) -> Result<Vec<CeremonyMessage>> {
        let others: Vec<ParticipantIndex> =
            (1..=self.plan.len()).filter(|&i| i != self.me).collect();
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
                    "timed out waiting for {} messages from {}; check that they ran `dkg join` with the same plan on the same USB directory, then start over with a new plan",
                    kind.name(),
                    names.join(", ")
                );
            }
            std::thread::sleep(poll);
        }
    }
}

/// `dkg join`.
pub(crate) fn join(
    config: &Config,
    home: &Home,
    plan_path: &Path,
    usb: &Path,
    timeout: Duration,
    poll: Duration,
    out: &Output,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let plan = crate::plan::read(plan_path)?;
    if !matches!(plan.kind(), CeremonyKind::Dkg) {
        return Err(Refused(
            "the plan is not for a key generation; ask the ceremony lead for the DKG plan".into(),
        )
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

    let mut ex = Exchange {
        plan: &plan,
        identity: &identity,
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
        out,
    };

    let (state, round1) = Keygen::start_dkg(&plan, &identity, &mut OsRng).map_err(aborted)?;
    ex.send(&[round1])?;
    let received = ex.wait_for(MessageKind::DkgRound1, deadline, poll)?;
    let (state, round2) = state
        .receive_round1(&identity, &received, &mut OsRng)
        .map_err(aborted)?;
    ex.send(&round2)?;
    let received = ex.wait_for(MessageKind::DkgRound2, deadline, poll)?;
    let (state, certificate) = state
        .receive_round2(&identity, &received, &mut OsRng)
        .map_err(aborted)?;
    ex.send(&[certificate])?;
    let received = ex.wait_for(MessageKind::DkgCertificate, deadline, poll)?;
    let output = state.finish(&identity, &received).map_err(aborted)?;
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
        }),
        &format!(
            "key share stored in {}\ngroup xpub: {}\ntranscript hash: {transcript}",
            dir.display(),
            group.xpub()
        ),
    )
}
