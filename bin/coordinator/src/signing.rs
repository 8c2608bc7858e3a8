//! What comes in from the air gap: signers' commitment envelopes, authenticated against
//! the identity cards of the DKG plan.

use custody_airgap::envelope::{EnvelopeType, MemoryReplayGuard, Receiver};
use custody_threshold::{CeremonyPlan, CommitmentBatch};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::error::ApiError;

/// The envelope session of a wallet's commitment batches: the first 16 bytes of SHA-256
/// of the group's compressed public key (as `custody-signer commitments issue` uses).
pub fn commitment_session_id(group_key: &[u8; 33]) -> [u8; 16] {
    let h = Sha256::digest(group_key);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    id
}

/// Opens a commitment envelope: signed by a plan participant, of the right type, in time,
/// carrying a batch for this wallet whose signer index is the sender's place in the plan.
///
/// # Errors
/// 400 saying which check failed; 409 without a configured plan.
pub fn open_commitments(app: &App, bytes: &[u8]) -> Result<CommitmentBatch, ApiError> {
    let wallet = app.wallet()?.clone();
    let plan_path = app.config.wallet.plan_file.clone().ok_or_else(|| {
        ApiError::conflict(
            "no_plan",
            "wallet.plan_file is not configured; the plan's identity cards authenticate signers",
        )
    })?;
    let plan_bytes = std::fs::read(&plan_path).map_err(ApiError::internal)?;
    let plan = CeremonyPlan::decode(&plan_bytes).map_err(ApiError::internal)?;
    let cards = plan.participants().to_vec();
    let session = commitment_session_id(&wallet.group.public_key());
    let mut receiver = Receiver::new(session, &cards, None, MemoryReplayGuard::default());
    let now = u64::try_from(app.now()).unwrap_or(0);
    let opened = receiver
        .open(bytes, Some(EnvelopeType::CommitmentBatch), now)
        .map_err(|e| ApiError::bad_request(format!("commitment envelope refused: {e}")))?;
    let batch = CommitmentBatch::decode(&opened.payload)
        .map_err(|e| ApiError::bad_request(format!("commitment batch is malformed: {e}")))?;
    let position = cards
        .iter()
        .position(|c| c.signing_key() == opened.sender.signing_key())
        .ok_or_else(|| ApiError::internal("sender vanished from the plan"))?;
    if usize::from(batch.signer) != position + 1 {
        return Err(ApiError::bad_request(format!(
            "{} signed a batch for participant {}, but is participant {} in the plan",
            opened.sender.name(),
            batch.signer,
            position + 1
        )));
    }
    Ok(batch)
}
