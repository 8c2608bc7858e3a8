//! `eth keygen` and `eth presign`: this signer's side of the threshold-ECDSA ceremonies
//! over a shared USB directory.
//!
//! CGGMP21 state machines cannot be saved to disk (ADR 0013), so a ceremony runs in one
//! process, like `dkg join`: write our message files, wait for the others', feed them to
//! the session, repeat until the output is stored. Auxiliary info and key generation run
//! side by side on the same trips.
//!
//! # Files
//! Every message is a `custody_ecdsa::EcdsaMessage` (signed by its sender's identity;
//! point-to-point payloads encrypted to the recipient), written as it is, named like the
//! FROST envelope files (`docs/formats/usb-files.md`):
//! `{ceremony: 8 hex}-{sequence: 6 digits}-eth-{step}-from-{sender}-to-{recipient|all}.cpec`,
//! with step `aux-info`, `keygen` or `presign`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use custody_airgap::file::{list_complete, read_bounded, write_new};
use custody_ecdsa::{
    AuxInfoSession, EcdsaCeremonyError, EcdsaCeremonyKind, EcdsaMessage, EcdsaPlan, KeygenSession,
    PaillierPrimes, PresignSession, PresignatureStore, Step, BROADCAST,
};
use custody_keystore::EcdsaKeystore;
use custody_threshold::{Identity, ParticipantIndex};
use rand_core::OsRng;
use serde_json::json;

use crate::config::{Ceremony, Config};
use crate::eth::{
    eth_dir, plan_summary, read_plan, slug, EthHome, ETH_GROUP_FILE, ETH_KEYSTORE_DIR,
    ETH_PRIMES_FILE,
};
use crate::home::{create_private_dir, passphrase, Home};
use crate::output::Output;
use crate::Refused;

/// The extension of ECDSA ceremony message files.
pub const MESSAGE_EXTENSION: &str = "cpec";

fn aborted(e: EcdsaCeremonyError) -> anyhow::Error {
    Refused(format!(
        "the ceremony was aborted: {e}; nothing was stored. Keep the USB files for the investigation and start over with a new plan (a key ceremony also needs new primes: `eth primes`)"
    ))
    .into()
}

fn step_slug(step: Step) -> &'static str {
    match step {
        Step::AuxInfo => "aux-info",
        Step::Keygen => "keygen",
        _ => "presign",
    }
}

/// Writes our message files and reads everyone else's.
struct Exchange<'a> {
    plan: &'a EcdsaPlan,
    usb: &'a Path,
    seen: HashSet<PathBuf>,
    heard_from: BTreeSet<ParticipantIndex>,
    out: &'a Output,
}

impl<'a> Exchange<'a> {
    fn new(plan: &'a EcdsaPlan, usb: &'a Path, out: &'a Output) -> Self {
        Exchange {
            plan,
            usb,
            seen: HashSet::new(),
            heard_from: BTreeSet::new(),
            out,
        }
    }

    fn name_of(&self, index: ParticipantIndex) -> String {
        self.plan
            .participant(index)
            .map_or_else(|| format!("#{index}"), |c| c.name().to_owned())
    }

    fn send(&mut self, messages: &[EcdsaMessage]) -> Result<()> {
        for msg in messages {
            let to = if msg.recipient() == BROADCAST {
                "all".to_owned()
            } else {
                slug(&self.name_of(msg.recipient()))
            };
            let name = format!(
                "{}-{:06}-eth-{}-from-{}-to-{to}.{MESSAGE_EXTENSION}",
                &hex::encode(self.plan.ceremony_id())[..8],
                msg.sequence(),
                step_slug(msg.step()),
                slug(&self.name_of(msg.sender())),
            );
            let path = write_new(self.usb, &name, &msg.encode()).with_context(|| {
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

    /// The messages of this ceremony that arrived since the last call.
    fn poll(&mut self) -> Result<Vec<EcdsaMessage>> {
        let files = list_complete(self.usb).with_context(|| {
            format!(
                "cannot list {}; check that the USB stick is still mounted",
                self.usb.display()
            )
        })?;
        let mut new = Vec::new();
        for path in files {
            if path.extension().and_then(|e| e.to_str()) != Some(MESSAGE_EXTENSION)
                || !self.seen.insert(path.clone())
            {
                continue;
            }
            let bytes = read_bounded(&path)
                .with_context(|| format!("cannot read {}; check the USB stick", path.display()))?;
            match EcdsaMessage::decode(&bytes) {
                Ok(m) if m.ceremony_id() == self.plan.ceremony_id() => {
                    self.heard_from.insert(m.sender());
                    new.push(m);
                }
                Ok(_) => {}
                Err(e) => self.out.note(&format!(
                    "ignoring {}: not an ECDSA message ({e})",
                    path.display()
                )),
            }
        }
        Ok(new)
    }

    fn timeout(&self, parties: &[ParticipantIndex], me: ParticipantIndex) -> anyhow::Error {
        let silent: Vec<String> = parties
            .iter()
            .filter(|p| **p != me && !self.heard_from.contains(p))
            .map(|p| self.name_of(*p))
            .collect();
        let who = if silent.is_empty() {
            "the other participants (each sent something, but the ceremony did not finish)"
                .to_owned()
        } else {
            format!("{} (nothing received from them)", silent.join(", "))
        };
        anyhow::anyhow!(
            "timed out waiting for {who}; check that everyone joined with the same plan on the same USB directory, then start over with a new plan"
        )
    }
}

/// What the loop needs from a session.
trait Session {
    fn step(&self) -> Step;
    fn done(&self) -> bool;
    fn feed(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError>;
}

macro_rules! session {
    ($t:ty, $step:expr) => {
        impl Session for $t {
            fn step(&self) -> Step {
                $step
            }
            fn done(&self) -> bool {
                self.is_finished()
            }
            fn feed(
                &mut self,
                identity: &Identity,
                messages: &[EcdsaMessage],
            ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
                self.receive(identity, messages, &mut OsRng)
            }
        }
    };
}
session!(AuxInfoSession, Step::AuxInfo);
session!(KeygenSession, Step::Keygen);
session!(PresignSession, Step::Presign);

/// A session with the messages held back for it.
///
/// A peer's message with sequence `s` is its `s`-th round. It is delivered only once we
/// have sent our own round `s`: a session that is handed the next round's messages early
/// can finish two rounds in one call and put both rounds' messages of one protocol
/// instance into one envelope, which `custody-ecdsa` 0.1 receivers refuse ("protocol
/// message count is 2, more than the maximum of 1"). Delivering round by round keeps one
/// round per envelope.
struct Gated<'s> {
    session: &'s mut dyn Session,
    /// Our rounds sent so far (our messages carry sequences `0..sent`).
    sent: u16,
    held: Vec<EcdsaMessage>,
}

/// Delivers the USB directory's messages to the sessions until all are finished.
/// `started` holds each session's first messages, already written.
fn run(
    ex: &mut Exchange<'_>,
    identity: &Identity,
    sessions: Vec<(&mut dyn Session, bool)>,
    parties: &[ParticipantIndex],
    me: ParticipantIndex,
    c: &Ceremony,
    deadline: Instant,
) -> Result<()> {
    let mut gated: Vec<Gated<'_>> = sessions
        .into_iter()
        .map(|(session, started)| Gated {
            session,
            sent: u16::from(started),
            held: Vec::new(),
        })
        .collect();
    loop {
        if gated.iter().all(|g| g.session.done()) {
            return Ok(());
        }
        let new = ex.poll()?;
        let mut progressed = !new.is_empty();
        for g in gated.iter_mut() {
            let step = g.session.step();
            g.held
                .extend(new.iter().filter(|m| m.step() == step).cloned());
            while !g.session.done() {
                let (ready, later): (Vec<EcdsaMessage>, Vec<EcdsaMessage>) =
                    std::mem::take(&mut g.held)
                        .into_iter()
                        .partition(|m| m.sequence() < g.sent);
                g.held = later;
                if ready.is_empty() {
                    break;
                }
                let reply = g.session.feed(identity, &ready).map_err(aborted)?;
                if !reply.is_empty() {
                    g.sent += 1;
                    ex.send(&reply)?;
                    progressed = true;
                }
                if g.session.done() {
                    ex.out.note(&format!("{}: finished", step.name()));
                }
            }
        }
        if !progressed {
            if Instant::now() >= deadline {
                return Err(ex.timeout(parties, me));
            }
            std::thread::sleep(c.poll);
        }
    }
}

fn position(home: &Home, plan: &EcdsaPlan) -> Result<ParticipantIndex> {
    let (_, card) = home.card()?;
    plan.position_of(&card).ok_or_else(|| {
        Refused(format!(
            "this signer ({} {}) is not a participant in the plan; check that you were given the right plan",
            card.name(),
            card.fingerprint()
        ))
        .into()
    })
}

/// `eth keygen`.
pub(crate) fn keygen(config: &Config, home: &Home, c: &Ceremony, out: &Output) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let plan = read_plan(&c.plan)?;
    if !matches!(plan.kind(), EcdsaCeremonyKind::Key) {
        return Err(Refused(
            "the plan is not for an Ethereum key ceremony; ask the ceremony lead for the key plan"
                .into(),
        )
        .into());
    }
    let me = position(home, &plan)?;
    let eth = EthHome::new(home);
    if eth.has_share() {
        bail!(
            "{} already holds an Ethereum key share; use a fresh --home for a new key (shares are never replaced)",
            home.dir().display()
        );
    }
    let primes_path = eth_dir(home).join(ETH_PRIMES_FILE);
    if !primes_path.exists() {
        bail!("this signer has no Paillier primes; run `custody-signer eth primes` first (it takes minutes, do it before the ceremony)");
    }
    let (data, text) = plan_summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;
    let primes = {
        let bytes = custody_keystore::ecdsa::read_encrypted(&primes_path, &pass)
            .with_context(|| format!("cannot open {}", primes_path.display()))?;
        PaillierPrimes::from_secret_bytes(&bytes).with_context(|| {
            format!(
                "{} holds no valid primes; delete it and run `custody-signer eth primes` again",
                primes_path.display()
            )
        })?
    };

    let mut ex = Exchange::new(&plan, &c.usb, out);
    let (mut aux, first_aux) =
        AuxInfoSession::start(&plan, &identity, primes, &mut OsRng).map_err(aborted)?;
    // Primes serve one ceremony only (ADR 0013), whatever its outcome: once they are in a
    // session, the loose copy goes.
    std::fs::remove_file(&primes_path).with_context(|| {
        format!(
            "cannot delete the primes {} after starting the ceremony; delete the file by hand",
            primes_path.display()
        )
    })?;
    ex.send(&first_aux)?;
    let (mut kg, first_kg) = KeygenSession::start(&plan, &identity, &mut OsRng).map_err(aborted)?;
    ex.send(&first_kg)?;
    out.note("auxiliary info and key generation started; waiting for the other participants");
    let parties = plan.parties(Step::Keygen);
    run(
        &mut ex,
        &identity,
        vec![
            (&mut aux, !first_aux.is_empty()),
            (&mut kg, !first_kg.is_empty()),
        ],
        &parties,
        me,
        c,
        deadline,
    )
    .map_err(|e| {
        if e.downcast_ref::<Refused>().is_some() {
            e
        } else {
            e.context("the key ceremony did not complete and the primes are used up: run `custody-signer eth primes` again before the next attempt")
        }
    })?;
    let aux = aux.finish().map_err(aborted)?;
    let share = kg.finish(aux).map_err(aborted)?;
    let group = *share.group_key();

    let dir = eth_dir(home);
    create_private_dir(&dir)?;
    let ks_dir = dir.join(ETH_KEYSTORE_DIR);
    create_private_dir(&ks_dir)?;
    EcdsaKeystore::create(&ks_dir, share, &pass, config.encryption, &mut OsRng).with_context(
        || {
            format!(
                "cannot store the Ethereum key share in {}; the other participants may have theirs: do not discard this ceremony until the problem is fixed",
                ks_dir.display()
            )
        },
    )?;
    write_new(&dir, ETH_GROUP_FILE, &group.encode())
        .context("cannot store the Ethereum group key in the signer home; check the disk")?;
    home.append_history(plan.ceremony_id(), "eth-key", None)?;
    let address = group.checksum_address();
    out.record(
        "eth-keygen-complete",
        json!({
            "address": address,
            "group_public_key": hex::encode(group.compressed()),
            "threshold": plan.threshold(),
            "participants": plan.len(),
            "participant_index": me,
            "group_file": dir.join(ETH_GROUP_FILE).display().to_string(),
        }),
        &format!(
            "Ethereum key share stored in {}\naddress: {address}\ngroup key file: {}\nnext: presign with `custody-signer eth presign` before the first withdrawal",
            ks_dir.display(),
            dir.join(ETH_GROUP_FILE).display()
        ),
    )
}

/// `eth presign`.
pub(crate) fn presign(config: &Config, home: &Home, c: &Ceremony, out: &Output) -> Result<()> {
    let deadline = Instant::now() + c.timeout;
    let plan = read_plan(&c.plan)?;
    let EcdsaCeremonyKind::Presign {
        group_key,
        signers,
        count,
    } = plan.kind().clone()
    else {
        return Err(Refused(
            "the plan is not for presigning; ask the ceremony lead for the presigning plan".into(),
        )
        .into());
    };
    let me = position(home, &plan)?;
    if !signers.contains(&me) {
        return Err(Refused(
            "the plan does not name this signer among the presigning signers; check that you were given the right plan".into(),
        )
        .into());
    }
    let eth = EthHome::new(home);
    let group = eth.group()?;
    if group.compressed() != &group_key {
        return Err(Refused(
            "the presigning plan is for another Ethereum key than this signer's; check the plan"
                .into(),
        )
        .into());
    }
    let (data, text) = plan_summary(&plan);
    out.record("plan", data, &text)?;
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;
    let mut ks = eth.open_keystore(&pass)?;

    let mut ex = Exchange::new(&plan, &c.usb, out);
    let (mut session, first) =
        PresignSession::start(&plan, &identity, ks.share(), &mut OsRng).map_err(aborted)?;
    ex.send(&first)?;
    out.note(&format!(
        "presigning {count} presignatures started; waiting for the other signers"
    ));
    run(
        &mut ex,
        &identity,
        vec![(&mut session, !first.is_empty())],
        &signers,
        me,
        c,
        deadline,
    )?;
    let presignatures = session.finish().map_err(aborted)?;
    ks.presignatures().insert(presignatures).map_err(|e| {
        anyhow::anyhow!("cannot store the presignatures: {e}; this batch cannot be used, run a new presigning ceremony")
    })?;
    home.append_history(plan.ceremony_id(), "eth-presign", None)?;
    let available = ks.presignatures_ref().available().len();
    let names: Vec<String> = signers.iter().map(|s| ex.name_of(*s)).collect();
    out.record(
        "eth-presign-complete",
        json!({
            "batch": hex::encode(plan.ceremony_id()),
            "count": count,
            "signers": names,
            "available": available,
        }),
        &format!(
            "stored {count} presignatures of batch {} (signers: {}); {available} unused presignatures on this signer",
            hex::encode(plan.ceremony_id()),
            names.join(", ")
        ),
    )
}
