//! `wallet show` and `status`.

use anyhow::{Context, Result};
use custody_bitcoin::{Branch, WalletDescriptor};
use serde_json::{json, Value};

use crate::config::{Config, PassphraseSource};
use crate::home::{passphrase, Home};
use crate::output::Output;

/// `wallet show`.
pub(crate) fn wallet_show(home: &Home, count: u32, out: &Output) -> Result<()> {
    let group = home.group()?;
    let wallet = WalletDescriptor::for_group(&group, None)
        .context("cannot build the wallet descriptor of the group key; this is a bug, report it")?;
    let mut addresses = Vec::new();
    let mut text = format!(
        "descriptor: {}\ngroup xpub: {}\nnetwork: {}\nreceive addresses:",
        wallet.to_multipath_string(),
        group.xpub(),
        group.network()
    );
    for i in 0..count {
        let address = wallet
            .address(Branch::Receive, i)
            .with_context(|| format!("cannot derive receive address {i}; report this bug"))?;
        let path = wallet.full_path(Branch::Receive, i);
        text.push_str(&format!("\n  {path} {address}"));
        addresses
            .push(json!({"index": i, "path": path.to_string(), "address": address.to_string()}));
    }
    out.record(
        "wallet",
        json!({
            "descriptor": wallet.to_multipath_string(),
            "receive_descriptor": wallet.to_branch_string(Branch::Receive),
            "change_descriptor": wallet.to_branch_string(Branch::Change),
            "group_xpub": group.xpub().to_string(),
            "network": group.network().to_string(),
            "receive_addresses": addresses,
        }),
        &text,
    )
}

/// `status`. Nonce counters are shown only when `--passphrase-file` is given (the
/// journal is keyed by the nonce seed, which is inside the encrypted keystore).
pub(crate) fn status(config: &Config, home: &Home, out: &Output) -> Result<()> {
    let (_, card) = home.card()?;
    let has_share = home.has_share();
    let mut data = json!({
        "name": card.name(),
        "fingerprint": card.fingerprint(),
        "key_share": has_share,
        "group_xpub": Value::Null,
        "nonces": Value::Null,
    });
    let mut text = format!(
        "identity: {} {}\nkey share: {}",
        card.name(),
        card.fingerprint(),
        if has_share { "yes" } else { "no" }
    );
    if has_share {
        let group = home.group()?;
        data["group_xpub"] = json!(group.xpub().to_string());
        data["threshold"] = json!(group.threshold());
        data["participants"] = json!(group.participants());
        data["network"] = json!(group.network().to_string());
        text.push_str(&format!(
            "\ngroup: {}-of-{} on {}\ngroup xpub: {}",
            group.threshold(),
            group.participants(),
            group.network(),
            group.xpub()
        ));
        if let PassphraseSource::File(_) = config.passphrase {
            let pass = passphrase(&config.passphrase, false)?;
            let ks = home.open_keystore(&pass)?;
            let journal = ks.nonce_store();
            let issued = journal.high_water();
            let available = (0..issued).filter(|&c| journal.is_available(c)).count() as u64;
            data["nonces"] = json!({
                "issued": issued,
                "available": available,
                "used_or_burned": issued - available,
                "recovered_from_torn_tail": journal.recovered_from_torn_tail(),
            });
            text.push_str(&format!(
                "\nnonces: {issued} issued, {available} available, {} used or burned",
                issued - available
            ));
        } else {
            text.push_str("\nnonces: pass --passphrase-file to show the nonce counters");
        }
    }
    out.record("status", data, &text)
}
