//! Everything that crosses the air gap between the online coordinator and the offline
//! signers of CoinPort Custody, in both directions.
//!
//! - [`envelope`]: signed, versioned envelopes. A receiver refuses unknown versions, bad
//!   signatures, unknown senders, the wrong session, expired messages and replays, and
//!   returns nothing it has not fully checked.
//! - [`file`](mod@file): the USB-stick channel. Atomic, durable, never-overwriting writes; names that
//!   say what a file is; PSBT files in the conventions hardware wallets use.
//! - [`qr`]: the camera channel. BC-UR (`ur:crypto-psbt` and our envelope type) and BBQr
//!   with fountain codes, rendered to terminal, PNG, SVG and GIF, read back from images or
//!   scanner text.
//!
//! Only [`file`](mod@file) touches the file system; nothing here prints or opens a network socket.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod envelope;
pub mod file;
pub mod qr;
