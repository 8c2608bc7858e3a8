//! QR transport for the signer: show or write the frames of what it sends (commitment
//! envelopes as `ur:coinport-envelope`, answers as `ur:crypto-psbt`), and collect a
//! request from scanned frames. Framing, rendering and decoding are
//! [`custody_airgap::qr`]'s; this module only moves bytes between it and the terminal or
//! files.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use custody_airgap::file::{read_bounded, write_new};
use custody_airgap::qr::{
    encode_ur, render_gif, render_png, render_terminal, Collector, Decoded, Profile, UrKind,
};

use crate::output::Output;

/// PNG and GIF pixels per QR module.
const SCALE: u32 = 6;
/// Delay between animation frames.
const FRAME_DELAY_MS: u32 = 300;
/// How many times `--qr-show` plays the animation on a terminal.
const SHOW_CYCLES: usize = 5;

/// Where the frames of an outgoing message go.
#[derive(Debug, Clone, Default)]
pub struct QrOut {
    /// Write `BASE-qr-NNN.png` frames here.
    pub dir: Option<PathBuf>,
    /// Also write `BASE-qr.gif`.
    pub gif: bool,
    /// Show the frames on stdout.
    pub show: bool,
    /// Frame density.
    pub profile: Profile,
}

impl QrOut {
    /// Whether any QR output was asked for.
    pub fn wanted(&self) -> bool {
        self.dir.is_some() || self.show
    }
}

/// Where an incoming request comes from.
#[derive(Debug, Clone)]
pub enum RequestSource {
    /// A PSBT file (binary, base64 or hex).
    File(PathBuf),
    /// QR images (PNG, GIF, JPEG), frames in any order.
    Images(Vec<PathBuf>),
    /// UR or BBQr text lines on stdin (e.g. `zbarcam --raw`).
    StdinLines,
}

/// The frames for `bytes`: every fragment once, then half as many fountain parts again
/// so a camera that missed a few still completes.
fn frames(kind: UrKind, bytes: &[u8], profile: Profile) -> Result<Vec<String>> {
    let mut encoder =
        encode_ur(kind, bytes, profile).context("cannot split the message into QR frames")?;
    if encoder.is_single_part() {
        return Ok(vec![encoder.next_part()]);
    }
    let n = encoder.fragment_count();
    Ok(encoder.next_parts(n + n.div_ceil(2)))
}

/// Writes and shows the QR frames of `bytes` as `qr` asks. Returns the files written.
pub(crate) fn emit(
    qr: &QrOut,
    kind: UrKind,
    bytes: &[u8],
    base: &str,
    out: &Output,
) -> Result<Vec<PathBuf>> {
    if !qr.wanted() {
        return Ok(Vec::new());
    }
    let frames = frames(kind, bytes, qr.profile)?;
    let mut written = Vec::new();
    if let Some(dir) = &qr.dir {
        for (i, f) in frames.iter().enumerate() {
            let png = render_png(f, SCALE).context("cannot render a QR frame")?;
            let name = format!("{base}-qr-{:03}.png", i + 1);
            written.push(write_new(dir, &name, &png).with_context(|| {
                format!(
                    "cannot write {name} to {}; check the directory",
                    dir.display()
                )
            })?);
        }
        if qr.gif {
            let gif = render_gif(&frames, FRAME_DELAY_MS, SCALE)
                .context("cannot render the QR animation")?;
            let name = format!("{base}-qr.gif");
            written.push(write_new(dir, &name, &gif).with_context(|| {
                format!(
                    "cannot write {name} to {}; check the directory",
                    dir.display()
                )
            })?);
        }
        out.note(&format!(
            "wrote {} QR frames ({}) to {}",
            frames.len(),
            kind,
            dir.display()
        ));
    }
    if qr.show {
        show(&frames)?;
    }
    Ok(written)
}

/// Shows the frames: animated on a terminal, each frame once in a pipe.
fn show(frames: &[String]) -> Result<()> {
    let rendered: Vec<String> = frames
        .iter()
        .map(|f| render_terminal(f))
        .collect::<std::result::Result<_, _>>()
        .context("cannot render a QR frame")?;
    let mut stdout = std::io::stdout().lock();
    if !stdout.is_terminal() {
        for (i, r) in rendered.iter().enumerate() {
            writeln!(stdout, "QR frame {} of {}\n{r}", i + 1, rendered.len())?;
        }
        return Ok(stdout.flush()?);
    }
    for _ in 0..SHOW_CYCLES {
        for (i, r) in rendered.iter().enumerate() {
            // Clear the screen, home the cursor, draw.
            writeln!(
                stdout,
                "\x1b[2J\x1b[H{r}frame {} of {}",
                i + 1,
                rendered.len()
            )?;
            stdout.flush()?;
            std::thread::sleep(Duration::from_millis(u64::from(FRAME_DELAY_MS)));
        }
    }
    Ok(())
}

/// Reads a request PSBT from QR images or scanned lines. Returns the PSBT bytes.
pub(crate) fn collect(source: &RequestSource, out: &Output) -> Result<Vec<u8>> {
    let mut collector = Collector::new();
    match source {
        RequestSource::File(_) => bail!("not a QR source"),
        RequestSource::Images(paths) => {
            for p in paths {
                let bytes = read_bounded(p)
                    .with_context(|| format!("cannot read {}; check the path", p.display()))?;
                match collector.push_image(&bytes) {
                    Ok(progress) => out.note(&format!(
                        "{}: {}% of the request",
                        p.display(),
                        progress.percent
                    )),
                    Err(e) => out.note(&format!("ignoring {}: {e}", p.display())),
                }
                if collector.is_complete() {
                    break;
                }
            }
        }
        RequestSource::StdinLines => {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let line = line.context("cannot read the scanned lines from stdin")?;
                if let Err(e) = collector.push_line(&line) {
                    out.note(&format!("ignoring a scanned line: {e}"));
                }
                if collector.is_complete() {
                    break;
                }
            }
        }
    }
    if !collector.is_complete() {
        let p = collector.progress();
        bail!(
            "the QR frames are incomplete ({}% from {} frames); scan or pass the missing frames",
            p.percent,
            p.frames_seen
        );
    }
    match collector
        .finish()
        .context("the QR message does not verify")?
    {
        Decoded::Psbt(bytes) => Ok(bytes),
        Decoded::Bbqr { data, .. } => Ok(data),
        _ => bail!("the QR frames carry an envelope, not a PSBT signing request"),
    }
}

/// A file base name for a request that came by QR.
pub(crate) fn base_name(txid: &str) -> String {
    format!("request-{}", txid.get(..16).unwrap_or(txid))
}

/// Checks a `--qr-out` directory.
pub(crate) fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "the QR output directory {} is not a directory; create it first",
            dir.display()
        );
    }
    Ok(())
}
