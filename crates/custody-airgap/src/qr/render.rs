//! Rendering frames as QR codes: terminal text, PNG, SVG and animated GIF.
//!
//! Every renderer encodes at error correction L with the `qrcode` crate, which picks
//! alphanumeric mode for upper-case frames, and draws the 4-module quiet zone the QR
//! standard asks for. Nothing is printed or written: the caller shows the result.

use qrcode::{EcLevel, QrCode, Version};

use super::QrError;

/// Modules of light border around every code (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: usize = 4;

/// Largest pixels-per-module accepted by the raster renderers.
pub const MAX_SCALE: u32 = 32;

/// Characters of the QR alphanumeric set (ISO/IEC 18004 table 5).
fn is_alphanumeric(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b" $%*+-./:".contains(&b))
}

/// Upper-case frame text as one alphanumeric segment. The `qrcode` crate's automatic
/// segmentation splits runs of digits (sequence numbers) into numeric segments whose extra
/// headers cost more than they save, so a frame sized to the profile's exact capacity would
/// spill into the next version.
fn alphanumeric_code(text: &str, version: i16) -> qrcode::types::QrResult<QrCode> {
    let mut bits = qrcode::bits::Bits::new(Version::Normal(version));
    bits.push_alphanumeric_data(text.as_bytes())?;
    bits.push_terminator(EcLevel::L)?;
    QrCode::with_bits(bits, EcLevel::L)
}

fn encode(text: &str) -> Result<QrCode, QrError> {
    let too_long = |source: qrcode::types::QrError| QrError::QrEncode {
        len: text.len(),
        source: Box::new(source),
    };
    if !text.is_empty() && is_alphanumeric(text) {
        // 11 bits per two characters plus a 4-bit mode and up to 13-bit count header.
        let bits = text.len() * 11 / 2 + 17;
        let mut last_error = qrcode::types::QrError::DataTooLong;
        for version in 1..=40 {
            // Skip versions that certainly cannot hold the text (L holds < 24 bits/module²).
            let modules = (17 + 4 * version as usize).pow(2);
            if bits > modules {
                continue;
            }
            match alphanumeric_code(text, version) {
                Ok(code) => return Ok(code),
                Err(e) => last_error = e,
            }
        }
        return Err(too_long(last_error));
    }
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).map_err(too_long)
}

fn encode_at(text: &str, version: i16) -> Result<QrCode, QrError> {
    let result = if !text.is_empty() && is_alphanumeric(text) {
        alphanumeric_code(text, version)
    } else {
        QrCode::with_version(text.as_bytes(), Version::Normal(version), EcLevel::L)
    };
    result.map_err(|source| QrError::QrEncode {
        len: text.len(),
        source: Box::new(source),
    })
}

/// The QR version (1–40) a frame's text is encoded at by the renderers.
///
/// # Errors
///
/// [`QrError::QrEncode`] if the text does not fit in any QR code.
pub fn qr_version_of(text: &str) -> Result<u8, QrError> {
    match encode(text)?.version() {
        Version::Normal(v) | Version::Micro(v) => Ok(u8::try_from(v).unwrap_or(u8::MAX)),
    }
}

/// A code as a square of dark (true) and light modules, quiet zone included.
struct Modules {
    size: usize,
    dark: Vec<bool>,
}

impl Modules {
    fn new(code: &QrCode) -> Self {
        let width = code.width();
        let size = width + 2 * QUIET_ZONE;
        let mut dark = vec![false; size * size];
        for (i, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (i % width, i / width);
            dark[(y + QUIET_ZONE) * size + x + QUIET_ZONE] = color == qrcode::Color::Dark;
        }
        Self { size, dark }
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.size && y < self.size && self.dark[y * self.size + x]
    }
}

fn check_scale(scale: u32) -> Result<usize, QrError> {
    if scale == 0 || scale > MAX_SCALE {
        return Err(QrError::InvalidRenderParameter {
            reason: format!("scale {scale} is outside 1..={MAX_SCALE} pixels per module"),
        });
    }
    Ok(scale as usize)
}

/// Renders a frame as a PNG: black modules on white, `scale` pixels per module, 1-bit
/// greyscale.
///
/// # Errors
///
/// [`QrError::QrEncode`] if the text does not fit in a QR code,
/// [`QrError::InvalidRenderParameter`] for a scale outside 1..=[`MAX_SCALE`].
pub fn render_png(text: &str, scale: u32) -> Result<Vec<u8>, QrError> {
    let scale = check_scale(scale)?;
    let modules = Modules::new(&encode(text)?);
    let side = modules.size * scale;
    let side_u32 = u32::try_from(side).map_err(|_| QrError::InvalidRenderParameter {
        reason: "image too large".into(),
    })?;
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0u8; row_bytes * side];
    for y in 0..side {
        let row = &mut pixels[y * row_bytes..(y + 1) * row_bytes];
        for x in 0..side {
            // In 1-bit greyscale a set bit is white.
            if !modules.is_dark(x / scale, y / scale) {
                row[x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let png_error = |e: png::EncodingError| QrError::ImageEncode {
        format: "PNG",
        source: Box::new(e),
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&pixels).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

/// Renders a frame as a standalone SVG document (8 user units per module, black on white,
/// quiet zone included).
///
/// # Errors
///
/// [`QrError::QrEncode`] if the text does not fit in a QR code.
pub fn render_svg(text: &str) -> Result<String, QrError> {
    let code = encode(text)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .quiet_zone(true)
        .module_dimensions(8, 8)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// Renders a frame as text for a terminal: two modules per character with the Unicode half
/// blocks `▀ ▄ █` and spaces, one line per two module rows, quiet zone included.
///
/// Light modules are drawn as block characters and dark ones as spaces, so the code reads
/// correctly on the usual light-on-dark terminal; on a dark-on-light terminal it would come
/// out inverted, which many scanners (zbar among them) do not read.
///
/// # Errors
///
/// [`QrError::QrEncode`] if the text does not fit in a QR code.
pub fn render_terminal(text: &str) -> Result<String, QrError> {
    let modules = Modules::new(&encode(text)?);
    let mut out = String::with_capacity((modules.size + 1) * modules.size.div_ceil(2) * 3);
    for y in (0..modules.size).step_by(2) {
        for x in 0..modules.size {
            let top_light = !modules.is_dark(x, y);
            // Past the last row the quiet zone continues (light).
            let bottom_light = y + 1 >= modules.size || !modules.is_dark(x, y + 1);
            out.push(match (top_light, bottom_light) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// Renders frames as an endlessly looping animated GIF, for showing on another screen.
///
/// All frames are drawn at the same QR version (the largest any frame needs) so the code
/// does not change size between frames. `delay_ms` is rounded to GIF's 10 ms units and
/// clamped to 20 ms–655 s (browsers replace shorter delays with 100 ms); 200–500 ms suits
/// most phone and webcam scanners.
///
/// # Errors
///
/// [`QrError::EmptyPayload`] for no frames, [`QrError::QrEncode`] if a frame does not fit,
/// [`QrError::InvalidRenderParameter`] for a scale outside 1..=[`MAX_SCALE`].
pub fn render_gif(frames: &[String], delay_ms: u32, scale: u32) -> Result<Vec<u8>, QrError> {
    let scale = check_scale(scale)?;
    if frames.is_empty() {
        return Err(QrError::EmptyPayload);
    }
    let mut version = 1;
    for frame in frames {
        if let Version::Normal(v) = encode(frame)?.version() {
            version = version.max(v);
        }
    }
    let side_modules = (17 + 4 * version as usize) + 2 * QUIET_ZONE;
    let side =
        u16::try_from(side_modules * scale).map_err(|_| QrError::InvalidRenderParameter {
            reason: "image too large for GIF".into(),
        })?;
    let delay = u16::try_from((delay_ms / 10).clamp(2, u32::from(u16::MAX))).unwrap_or(u16::MAX);
    let gif_error = |e: gif::EncodingError| QrError::ImageEncode {
        format: "GIF",
        source: Box::new(e),
    };

    // Palette index 0 is white, 1 is black.
    let palette = [0xff, 0xff, 0xff, 0x00, 0x00, 0x00];
    let mut encoder = gif::Encoder::new(Vec::new(), side, side, &palette).map_err(gif_error)?;
    encoder
        .set_repeat(gif::Repeat::Infinite)
        .map_err(gif_error)?;
    let side = usize::from(side);
    for text in frames {
        let modules = Modules::new(&encode_at(text, version)?);
        let mut pixels = vec![0u8; side * side];
        for (i, pixel) in pixels.iter_mut().enumerate() {
            let (x, y) = (i % side, i / side);
            *pixel = u8::from(modules.is_dark(x / scale, y / scale));
        }
        let side16 = u16::try_from(side).unwrap_or(u16::MAX);
        let mut frame = gif::Frame::from_indexed_pixels(side16, side16, pixels, None);
        frame.delay = delay;
        encoder.write_frame(&frame).map_err(gif_error)?;
    }
    encoder.into_inner().map_err(gif_error)
}
