//! `sign`: answers a PSBT signing request from the coordinator.
//!
//! 1. Reads the request PSBT (binary, base64 or hex) and checks it against the group's
//!    wallet with [`custody_bitcoin::check_signing_request`] under the default
//!    [`InspectPolicy`]: every input must be the wallet's, change must be proved ours, the
//!    fee must be within limits, and every input's sighash, derivation path and Taproot
//!    tweak recomputed from the PSBT must equal the coordinator's request item. The
//!    summary is printed.
//! 2. Asks for confirmation on the terminal unless `--yes`.
//! 3. Signs with the keystore, which consumes the nonce counters durably before any share
//!    is computed, and adds this signer's shares field to the PSBT.
//! 4. Writes the answer in the request's encoding as `{base}-{signer}-part.psbt` (Coldcard
//!    naming; `base` is the request's file name without `.psbt`, the signer's name keeps
//!    two signers' answers apart), never overwriting a file.
//!
//! Between 1 and 2, the coordinator's signed decision in the PSBT is re-checked against
//! this signer's installed policy ([`crate::policy`]): out of policy is refused (exit 1)
//! with or without `--yes`. A transaction whose every output is proved change is an
//! internal transfer (it voids an exported withdrawal by spending its coins back to the
//! wallet); the summary, the policy decision and the answer say so, and its fee is capped
//! like any other. `inspect` runs step 1 and the policy check, and signs nothing.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use bitcoin::psbt::Psbt;
use custody_airgap::file::{
    detect_psbt, encode_psbt, psbt_file_name, read_bounded, write_new, PsbtEncoding, PsbtStage,
};
use custody_bitcoin::{check_signing_request, fields, InspectPolicy, Inspection, WalletDescriptor};
use custody_threshold::{ConsumeError, SignError, SigningRequest};
use serde_json::{json, Value};

use crate::config::Config;
use crate::home::{passphrase, Home};
use crate::output::Output;
use crate::qr::{QrOut, RequestSource};
use crate::Refused;
use custody_airgap::qr::UrKind;

fn refused(what: impl std::fmt::Display) -> anyhow::Error {
    Refused(format!(
        "{what}; nothing was signed: do not sign this request, tell the coordinator"
    ))
    .into()
}

/// A request PSBT read and checked against the wallet.
pub(crate) struct Checked {
    pub(crate) psbt: Psbt,
    pub(crate) encoding: PsbtEncoding,
    pub(crate) inspection: Inspection,
    pub(crate) request: SigningRequest,
}

/// Reads the request PSBT (from a file, or from QR frames) and checks it against the
/// group's wallet; refuses (exit 1) what does not hold. Returns it with a label for
/// messages and the base name of the answer file.
pub(crate) fn check_request(
    home: &Home,
    source: &RequestSource,
    out: &Output,
) -> Result<(Checked, Option<String>)> {
    let group = home.group()?;
    let (raw, encoding, label, base) = match source {
        RequestSource::File(request_path) => {
            let bytes = read_bounded(request_path).with_context(|| {
                format!(
                    "cannot read {}; check the path and the USB stick",
                    request_path.display()
                )
            })?;
            let (raw, encoding) = detect_psbt(&bytes).with_context(|| {
                format!(
                    "{} is not a PSBT file; ask the coordinator for the signing request",
                    request_path.display()
                )
            })?;
            let file_name = request_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("request");
            let base = file_name
                .strip_suffix(".psbt")
                .unwrap_or(file_name)
                .to_owned();
            (
                raw,
                encoding,
                request_path.display().to_string(),
                Some(base),
            )
        }
        qr => (
            crate::qr::collect(qr, out)?,
            PsbtEncoding::Binary,
            "the QR request".to_owned(),
            None,
        ),
    };
    let request_path = Path::new(&label);
    let psbt = Psbt::deserialize(&raw).with_context(|| {
        format!(
            "{} is not a valid PSBT; ask the coordinator for a new signing request",
            request_path.display()
        )
    })?;
    let wallet = WalletDescriptor::for_group(&group, None)
        .context("cannot build the wallet descriptor of the group key; this is a bug, report it")?;
    let policy = InspectPolicy::default();
    let (inspection, request) = check_signing_request(&wallet, &psbt, &policy)
        .map_err(|e| refused(format!("the signing request does not hold: {e}")))?;
    Ok((
        Checked {
            psbt,
            encoding,
            inspection,
            request,
        },
        base,
    ))
}

/// Whether the transaction pays no one: every output is proved change of this wallet.
fn is_internal(inspection: &Inspection) -> bool {
    crate::policy::withdrawal_of(inspection).is_internal()
}

/// The inspection, and for an internal transfer (every output proved change) a line that
/// says so: `internal_transfer` in JSON.
fn print_inspection(inspection: &Inspection, out: &Output) -> Result<()> {
    let mut summary: Value = serde_json::from_str(&inspection.to_json())
        .context("cannot render the inspection; this is a bug, report it")?;
    let internal = is_internal(inspection);
    summary["internal_transfer"] = json!(internal);
    let mut text = inspection.to_string();
    if internal {
        text.push_str(&format!(
            "\nInternal transfer: every output goes back to this wallet's own change addresses; \
             nothing leaves the wallet but the fee ({} sat). Once confirmed, it voids any other \
             transaction that spends one of these coins.",
            inspection.fee_sat
        ));
    }
    out.record("inspection", summary, &text)
}

/// `inspect`: the summary `sign` would show, without signing or unlocking anything.
pub(crate) fn inspect(home: &Home, source: &RequestSource, out: &Output) -> Result<()> {
    let (checked, _) = check_request(home, source, out)?;
    print_inspection(&checked.inspection, out)?;
    let (data, text) = crate::policy::check(home, &checked.psbt, &checked.inspection)?;
    out.record("policy-decision", data, &text)?;
    let signers = checked.request.signers().to_vec();
    out.record(
        "request",
        json!({
            "inputs_to_sign": checked.request.items().len(),
            "signers": signers,
            "txid": checked.inspection.txid,
            "internal_transfer": is_internal(&checked.inspection),
        }),
        &format!(
            "signing request: {} inputs to sign; nothing was signed (run `sign` to sign)",
            checked.request.items().len()
        ),
    )
}

/// `sign`.
pub(crate) fn sign(
    config: &Config,
    home: &Home,
    source: &RequestSource,
    qr: &QrOut,
    usb: &Path,
    yes: bool,
    out: &Output,
) -> Result<()> {
    let (_, card) = home.card()?;
    let (
        Checked {
            mut psbt,
            encoding,
            inspection,
            request,
        },
        base,
    ) = check_request(home, source, out)?;
    print_inspection(&inspection, out)?;
    let (data, text) = crate::policy::check(home, &psbt, &inspection)?;
    out.record("policy-decision", data, &text)?;

    if !yes {
        confirm()?;
    }
    let pass = passphrase(&config.passphrase, false)?;
    let mut ks = home.open_keystore(&pass)?;
    let shares = ks.sign(&request).map_err(|e| match e {
        SignError::Nonce(ConsumeError::Store(source)) => anyhow::Error::new(source).context(
            "the nonce journal could not record the signature; check the disk, then ask the coordinator for a new request",
        ),
        other => refused(format!("the keystore refused to sign: {other}")),
    })?;
    fields::set_signature_shares(&mut psbt, &shares);

    let dir = usb;
    let base = base.unwrap_or_else(|| crate::qr::base_name(&inspection.txid));
    let name = psbt_file_name(&format!("{base}-{}", card.name()), PsbtStage::PartlySigned);
    let answer = encode_psbt(&psbt.serialize(), encoding);
    let path = write_new(dir, &name, &answer).with_context(|| {
        format!(
            "cannot write the answer {name} to {}; the nonces are spent: if the file exists this request was answered already, otherwise ask the coordinator for a new request",
            dir.display()
        )
    })?;
    let answer_base = name.strip_suffix(".psbt").unwrap_or(&name).to_owned();
    let qr_files = crate::qr::emit(qr, UrKind::CryptoPsbt, &psbt.serialize(), &answer_base, out)?;
    let internal = is_internal(&inspection);
    out.record(
        "signed",
        json!({
            "file": path.display().to_string(),
            "qr_files": qr_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "txid": inspection.txid,
            "inputs": request.items().len(),
            "signer": shares.signer,
            "internal_transfer": internal,
        }),
        &format!(
            "signed {} inputs of {}{}\nwrote {}",
            request.items().len(),
            inspection.txid,
            if internal {
                " (an internal transfer: nothing leaves the wallet but the fee)"
            } else {
                ""
            },
            path.display()
        ),
    )
}

/// Asks on the terminal; anything but `yes` declines.
pub(crate) fn confirm() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("not asking for confirmation in a pipe: run on a terminal, or pass --yes after checking the summary");
    }
    {
        let mut err = std::io::stderr().lock();
        write!(err, "Sign this transaction? Type yes to sign: ")?;
        err.flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "yes" {
        return Err(Refused("you declined; nothing was signed".into()).into());
    }
    Ok(())
}
