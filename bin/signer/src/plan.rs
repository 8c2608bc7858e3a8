//! `plan create` and the plan summary every ceremony command prints.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use custody_airgap::file::{read_bounded, write_new};
use custody_threshold::{CeremonyKind, CeremonyPlan, GroupKey, IdentityCard, Network};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::config::PlanKind;
use crate::output::Output;

/// The plan as a JSON value and as text.
pub(crate) fn summary(plan: &CeremonyPlan) -> (Value, String) {
    let kind = match plan.kind() {
        CeremonyKind::Dkg => "dkg",
        CeremonyKind::Refresh { .. } => "refresh",
        CeremonyKind::Repair { .. } => "repair",
        _ => "other",
    };
    let participants: Vec<Value> = plan
        .participants()
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"index": i + 1, "name": c.name(), "fingerprint": c.fingerprint()}))
        .collect();
    let mut text = format!(
        "ceremony: {} ({kind})\nplan hash: {}\nthreshold: {} of {}\nnetwork: {}\npurpose: {}\nparticipants:",
        hex::encode(plan.ceremony_id()),
        hex::encode(plan.hash()),
        plan.threshold(),
        plan.len(),
        plan.network(),
        plan.purpose(),
    );
    for (i, c) in plan.participants().iter().enumerate() {
        text.push_str(&format!("\n  {}. {} {}", i + 1, c.name(), c.fingerprint()));
    }
    let data = json!({
        "ceremony_id": hex::encode(plan.ceremony_id()),
        "kind": kind,
        "plan_hash": hex::encode(plan.hash()),
        "threshold": plan.threshold(),
        "participants": participants,
        "network": plan.network().to_string(),
        "purpose": plan.purpose(),
    });
    (data, text)
}

/// Reads a group key file and checks it fits the plan's threshold and cards.
fn read_group(path: &Path, threshold: u16, cards: &[IdentityCard]) -> Result<GroupKey> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    let group = GroupKey::decode(&bytes).with_context(|| {
        format!(
            "{} is not a group key; copy group.key from a signer home",
            path.display()
        )
    })?;
    if group.threshold() != threshold || usize::from(group.participants()) != cards.len() {
        bail!(
            "the group is {}-of-{}, the plan {threshold}-of-{}; give the threshold and every card of the group, in the original order",
            group.threshold(),
            group.participants(),
            cards.len()
        );
    }
    Ok(group)
}

/// Reads and decodes a plan file.
pub(crate) fn read(path: &Path) -> Result<CeremonyPlan> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read the plan {}; check the path", path.display()))?;
    CeremonyPlan::decode(&bytes).with_context(|| {
        format!(
            "{} is not a ceremony plan; ask the ceremony lead for the plan file",
            path.display()
        )
    })
}

/// `plan create`.
pub(crate) fn create(
    kind: &PlanKind,
    threshold: u16,
    cards: &[PathBuf],
    network: Network,
    purpose: &str,
    out_path: &Path,
    out: &Output,
) -> Result<()> {
    let cards = cards
        .iter()
        .map(|p| {
            let bytes = read_bounded(p)
                .with_context(|| format!("cannot read {}; check the path", p.display()))?;
            IdentityCard::decode(&bytes).with_context(|| {
                format!(
                    "{} is not an identity card; copy `identity.card` from the signer home",
                    p.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let kind = match kind {
        PlanKind::Dkg => CeremonyKind::Dkg,
        PlanKind::Refresh { group } => {
            let group = read_group(group, threshold, &cards)?;
            CeremonyKind::Refresh {
                group_key: group.public_key(),
            }
        }
        PlanKind::Repair {
            group,
            lost,
            helpers,
        } => {
            let group = read_group(group, threshold, &cards)?;
            let index_of = |name: &str| -> Result<u16> {
                cards
                    .iter()
                    .position(|c| c.name() == name)
                    .map(|p| p as u16 + 1)
                    .with_context(|| {
                        format!("no card is named {name:?}; check --lost and --helper")
                    })
            };
            CeremonyKind::Repair {
                group_key: group.public_key(),
                lost: index_of(lost)?,
                helpers: helpers.iter().map(|h| index_of(h)).collect::<Result<_>>()?,
            }
        }
    };
    let mut ceremony_id = [0u8; 16];
    OsRng.fill_bytes(&mut ceremony_id);
    let plan = CeremonyPlan::new(ceremony_id, kind, network, purpose, threshold, cards)
        .context("the plan is inconsistent; check the threshold, the purpose text and that no card is given twice")?;
    let dir = match out_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a file")?;
    let written = write_new(dir, name, &plan.encode()).with_context(|| {
        format!(
            "cannot write the plan to {}; choose another --out",
            out_path.display()
        )
    })?;
    let (mut data, text) = summary(&plan);
    data["file"] = json!(written.display().to_string());
    out.record(
        "plan",
        data,
        &format!("plan file: {}\n{text}", written.display()),
    )
}
