//! Reading QR codes back from image files with `rqrr`.

use std::io::Cursor;

use super::{QrError, MAX_IMAGE_PIXELS};

/// Most frames of an animated GIF that are searched for codes.
const MAX_GIF_FRAMES: usize = 2_000;

/// Most pixels, summed over frames, of an animated GIF that are searched for codes.
const MAX_GIF_TOTAL_PIXELS: u64 = 500_000_000;

/// A greyscale image: one luminance byte per pixel, row by row.
struct Luma {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn check_size(width: u64, height: u64) -> Result<(), QrError> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_IMAGE_PIXELS {
        return Err(QrError::ImageSize {
            width,
            height,
            max_pixels: MAX_IMAGE_PIXELS,
        });
    }
    Ok(())
}

/// Luminance of an RGBA pixel composited over white.
fn luma_over_white(r: u8, g: u8, b: u8, a: u8) -> u8 {
    let y = (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000;
    let a = u32::from(a);
    u8::try_from((y * a + 255 * (255 - a)) / 255).unwrap_or(u8::MAX)
}

/// Decodes every QR code in an image and returns their text, in reading order (for an
/// animated GIF, frame by frame).
///
/// PNG (any colour type and depth), GIF (every frame, composited as a viewer would show
/// it) and baseline or progressive JPEG are accepted, up to [`MAX_IMAGE_PIXELS`] pixels. Of a
/// GIF, at most the first 2000 frames and 500 megapixels in total are searched; later
/// frames are ignored. Codes whose text is not UTF-8 or that fail error correction are
/// skipped.
///
/// # Errors
///
/// [`QrError::UnsupportedImage`] for another format, [`QrError::ImageSize`] beyond the
/// limit, [`QrError::ImageDecode`] for a corrupt file, [`QrError::NoQrCode`] if no code was
/// read.
pub fn decode_image(bytes: &[u8]) -> Result<Vec<String>, QrError> {
    let mut texts = Vec::new();
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        texts.extend(read_codes(&decode_png(bytes)?));
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        decode_gif(bytes, |frame| texts.extend(read_codes(frame)))?;
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        texts.extend(read_codes(&decode_jpeg(bytes)?));
    } else {
        return Err(QrError::UnsupportedImage);
    }
    if texts.is_empty() {
        return Err(QrError::NoQrCode);
    }
    Ok(texts)
}

fn read_codes(image: &Luma) -> Vec<String> {
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(image.width, image.height, |x, y| {
            image.pixels[y * image.width + x]
        });
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}

fn decode_png(bytes: &[u8]) -> Result<Luma, QrError> {
    let fail = |e: png::DecodingError| QrError::ImageDecode {
        format: "PNG",
        reason: e.to_string(),
    };
    // Decoded RGBA at the pixel limit, plus the decoder's own buffers.
    let limits = png::Limits {
        bytes: usize::try_from(MAX_IMAGE_PIXELS * 4 + (16 << 20)).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(fail)?;
    let (width, height) = {
        let info = reader.info();
        (info.width, info.height)
    };
    check_size(u64::from(width), u64::from(height))?;
    let size = reader.output_buffer_size().ok_or(QrError::ImageSize {
        width: u64::from(width),
        height: u64::from(height),
        max_pixels: MAX_IMAGE_PIXELS,
    })?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(fail)?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(QrError::ImageDecode {
                format: "PNG",
                reason: "indexed colour was not expanded".into(),
            })
        }
    };
    let stride = info.line_size;
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = buf
            .get(y * stride..y * stride + width * channels)
            .ok_or_else(|| QrError::ImageDecode {
                format: "PNG",
                reason: "short image data".into(),
            })?;
        pixels.extend(row.chunks_exact(channels).map(|px| match *px {
            [l] => l,
            [l, a] => luma_over_white(l, l, l, a),
            [r, g, b] => luma_over_white(r, g, b, 255),
            [r, g, b, a] => luma_over_white(r, g, b, a),
            _ => u8::MAX,
        }));
    }
    Ok(Luma {
        width,
        height,
        pixels,
    })
}

/// Composites each GIF frame onto the logical screen, as a viewer shows it, and hands the
/// screen to `each_frame`; only one screen is held at a time (two with "restore previous"
/// disposal).
fn decode_gif(bytes: &[u8], mut each_frame: impl FnMut(&Luma)) -> Result<(), QrError> {
    let fail = |e: gif::DecodingError| QrError::ImageDecode {
        format: "GIF",
        reason: e.to_string(),
    };
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(MAX_IMAGE_PIXELS * 4).unwrap_or(std::num::NonZeroU64::MIN),
    ));
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(fail)?;
    let (width, height) = (usize::from(decoder.width()), usize::from(decoder.height()));
    check_size(width as u64, height as u64)?;

    // White where nothing has been drawn yet.
    let mut screen = Luma {
        width,
        height,
        pixels: vec![u8::MAX; width * height],
    };
    let mut frames = 0;
    let mut pixels_searched = 0u64;
    while let Some(frame) = decoder.read_next_frame().map_err(fail)? {
        frames += 1;
        pixels_searched += (width * height) as u64;
        if frames > MAX_GIF_FRAMES || pixels_searched > MAX_GIF_TOTAL_PIXELS {
            break;
        }
        let saved = (frame.dispose == gif::DisposalMethod::Previous).then(|| screen.pixels.clone());
        let (left, top) = (usize::from(frame.left), usize::from(frame.top));
        let frame_width = usize::from(frame.width).max(1);
        for (i, px) in frame.buffer.chunks_exact(4).enumerate() {
            let (x, y) = (left + i % frame_width, top + i / frame_width);
            if x < width && y < height && px[3] != 0 {
                screen.pixels[y * width + x] = luma_over_white(px[0], px[1], px[2], px[3]);
            }
        }
        each_frame(&screen);
        match (frame.dispose, saved) {
            (gif::DisposalMethod::Previous, Some(saved)) => screen.pixels = saved,
            (gif::DisposalMethod::Background, _) => {
                for y in top..(top + usize::from(frame.height)).min(height) {
                    for x in left..(left + frame_width).min(width) {
                        screen.pixels[y * width + x] = u8::MAX;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8]) -> Result<Luma, QrError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let fail = |e: zune_jpeg::errors::DecodeErrors| QrError::ImageDecode {
        format: "JPEG",
        reason: e.to_string(),
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(Cursor::new(bytes), options);
    decoder.decode_headers().map_err(fail)?;
    let (width, height) = decoder.dimensions().ok_or_else(|| QrError::ImageDecode {
        format: "JPEG",
        reason: "no frame header".into(),
    })?;
    check_size(width as u64, height as u64)?;
    let pixels = decoder.decode().map_err(fail)?;
    if pixels.len() != width * height {
        return Err(QrError::ImageDecode {
            format: "JPEG",
            reason: "unexpected output size".into(),
        });
    }
    Ok(Luma {
        width,
        height,
        pixels,
    })
}
