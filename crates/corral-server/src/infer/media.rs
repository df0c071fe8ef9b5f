//! Images (and sound files) sent with a request, from the messages' base64 `images` to the
//! [`Media`] a runner takes.
//!
//! Each image is checked here, before any runner sees it: its bytes must be base64, its format
//! one the runner decodes (sniffed from its first bytes, never trusted from a name or a MIME type),
//! and an image's size, read from its header, at most [`MAX_PIXELS`], so a small file that would
//! inflate to gigabytes of pixels (a decompression bomb) is refused before it is decoded. WebP,
//! which clients send (OpenAI's `data:image/webp`) but llama.cpp's image reader does not know, is
//! decoded here (its first frame, after the same size check) and sent on as a BMP.
//!
//! Where an image goes in the prompt is marked as Ollama marks it: its message's content gets one
//! tag per image in front (or in place of each `[img]` it holds), and the template renders the
//! message as text. The tag is `<__corral_media_KEY_N__>`, with a key drawn once per process, so
//! that no text a user writes can pass for an image; after rendering, [`place`] takes the tags out
//! of the prompt and gives each image its byte offset instead. Images of messages dropped to fit
//! the context leave no tag and are not sent.

use std::sync::OnceLock;

use base64::Engine as _;
use corral_types::api::Message;
use corral_types::runner::Media;

use crate::ApiError;

/// Most pixels an image may have (an 8K picture is 33 million).
pub const MAX_PIXELS: u64 = 50_000_000;

/// The file formats the runner decodes (llama.cpp's image and audio readers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Gif,
    Bmp,
    Webp,
    Wav,
    Mp3,
    Flac,
}

impl Format {
    /// The format of a file, from its first bytes.
    pub fn sniff(data: &[u8]) -> Option<Format> {
        let at = |offset: usize, magic: &[u8]| data.get(offset..offset + magic.len()) == Some(magic);
        Some(if at(0, b"\x89PNG\r\n\x1a\n") {
            Format::Png
        } else if at(0, b"\xff\xd8\xff") {
            Format::Jpeg
        } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
            Format::Gif
        } else if at(0, b"BM") && data.len() >= 26 {
            Format::Bmp
        } else if at(0, b"RIFF") && at(8, b"WEBP") {
            Format::Webp
        } else if at(0, b"RIFF") && at(8, b"WAVE") {
            Format::Wav
        } else if at(0, b"fLaC") {
            Format::Flac
        } else if at(0, b"ID3") || (data.len() >= 2 && data[0] == 0xff && data[1] & 0xe0 == 0xe0) {
            Format::Mp3
        } else {
            return None;
        })
    }

    fn is_image(self) -> bool {
        matches!(self, Format::Png | Format::Jpeg | Format::Gif | Format::Bmp | Format::Webp)
    }
}

/// An image's width and height from its header, if the header is whole.
fn dimensions(format: Format, data: &[u8]) -> Option<(u64, u64)> {
    let be32 = |o: usize| data.get(o..o + 4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    let le16 = |o: usize| data.get(o..o + 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])));
    let le32 =
        |o: usize| data.get(o..o + 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs().into());
    match format {
        Format::Png => Some((be32(16)?, be32(20)?)),
        Format::Gif => Some((le16(6)?, le16(8)?)),
        Format::Bmp => Some((le32(18)?, le32(22)?)),
        Format::Jpeg => jpeg_dimensions(data),
        Format::Webp => image_webp::WebPDecoder::new(std::io::Cursor::new(data))
            .ok()
            .map(|d| d.dimensions())
            .map(|(w, h)| (u64::from(w), u64::from(h))),
        _ => None,
    }
}

/// A JPEG's size: from the first start-of-frame segment, walking the segments before it.
fn jpeg_dimensions(data: &[u8]) -> Option<(u64, u64)> {
    let mut i = 2;
    loop {
        while *data.get(i)? != 0xff {
            i += 1;
        }
        while *data.get(i)? == 0xff {
            i += 1;
        }
        let marker = *data.get(i)?;
        i += 1;
        if matches!(marker, 0x01 | 0xd0..=0xd9) {
            continue; // no length
        }
        let len = usize::from(u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?]));
        let frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if frame {
            let h = u16::from_be_bytes([*data.get(i + 3)?, *data.get(i + 4)?]);
            let w = u16::from_be_bytes([*data.get(i + 5)?, *data.get(i + 6)?]);
            return Some((w.into(), h.into()));
        }
        i += len.max(2);
    }
}

/// Decodes and checks image `index` of a request: 400 naming what is wrong with it.
pub fn decode(index: usize, base64: &str) -> Result<Vec<u8>, ApiError> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(base64.trim().as_bytes())
        .map_err(|e| ApiError::bad_request(format!("invalid image input: image {index} is not valid base64 ({e})")))?;
    match check(index, &data)? {
        Format::Webp => webp_to_bmp(index, &data),
        _ => Ok(data),
    }
}

/// A WebP picture (checked) as an uncompressed 24-bit BMP, which llama.cpp reads.
fn webp_to_bmp(index: usize, data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let bad = |e: image_webp::DecodingError| {
        ApiError::bad_request(format!("invalid image input: image {index} is not a readable WebP picture ({e})"))
    };
    let mut decoder = image_webp::WebPDecoder::new(std::io::Cursor::new(data)).map_err(bad)?;
    let (w, h) = decoder.dimensions();
    let size = decoder.output_buffer_size().ok_or_else(|| bad(image_webp::DecodingError::ImageTooLarge))?;
    let mut pixels = vec![0; size];
    decoder.read_image(&mut pixels).map_err(bad)?;
    let channels = if decoder.has_alpha() { 4 } else { 3 };
    Ok(bmp(w, h, &pixels, channels))
}

/// A bottom-up 24-bit BMP of `w`×`h` pixels given top-down with `channels` bytes each (RGB or
/// RGBA, whose alpha is dropped).
fn bmp(w: u32, h: u32, pixels: &[u8], channels: usize) -> Vec<u8> {
    let row = (w as usize * 3).div_ceil(4) * 4;
    let image = row * h as usize;
    let mut out = Vec::with_capacity(54 + image);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(54 + image as u32).to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(w as i32).to_le_bytes());
    out.extend_from_slice(&(h as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // no compression
    out.extend_from_slice(&(image as u32).to_le_bytes());
    out.extend_from_slice(&[0; 16]); // resolution, palette
    for y in (0..h as usize).rev() {
        let start = out.len();
        for x in 0..w as usize {
            let p = &pixels[(y * w as usize + x) * channels..][..3];
            out.extend_from_slice(&[p[2], p[1], p[0]]);
        }
        out.resize(start + row, 0);
    }
    out
}

/// Checks the bytes of image `index`: a format the runner reads and, for a picture, a size that
/// its header gives and that is within [`MAX_PIXELS`].
pub fn check(index: usize, data: &[u8]) -> Result<Format, ApiError> {
    let Some(format) = Format::sniff(data) else {
        let head: String = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(ApiError::bad_request(format!(
            "invalid image input: image {index} ({} bytes, starting {head}) is not a PNG, JPEG, GIF, BMP, WebP, WAV, MP3 or FLAC file",
            data.len()
        )));
    };
    if format.is_image() {
        let Some((w, h)) = dimensions(format, data) else {
            return Err(ApiError::bad_request(format!(
                "invalid image input: image {index} ({format:?}, {} bytes) is truncated: its size cannot be read",
                data.len()
            )));
        };
        if w == 0 || h == 0 || w * h > MAX_PIXELS {
            return Err(ApiError::bad_request(format!(
                "invalid image input: image {index} is {w}x{h} pixels; at most {MAX_PIXELS} pixels are accepted"
            )));
        }
    }
    Ok(format)
}

/// The tag of image `n` in a message before rendering.
fn tag(n: usize) -> String {
    format!("<__corral_media_{}_{n}__>", key())
}

/// A key drawn once per process, so that a tag cannot be guessed.
fn key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        format!("{:016x}", h.finish())
    })
}

/// Takes the images out of `messages`, checked and decoded, and tags each one's place in its
/// message's content. Returns them in order.
pub fn attach(messages: &mut [Message]) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut images = Vec::new();
    for m in messages {
        let Some(list) = m.images.take() else { continue };
        let mut prefix = String::new();
        for data in list {
            let tag = tag(images.len());
            images.push(decode(images.len(), &data)?);
            if m.content.contains("[img]") {
                m.content = m.content.replacen("[img]", &tag, 1);
            } else {
                prefix.push_str(&tag);
            }
        }
        m.content.insert_str(0, &prefix);
    }
    Ok(images)
}

/// A piece of a rendered prompt: text, or the tag of image `n` (with the tag's own text).
enum Piece<'a> {
    Text(&'a str),
    Tag { n: usize, text: &'a str },
}

/// A rendered prompt cut into its text and its tags, in order. Text that only looks like a tag
/// (another key, no number) stays text.
fn pieces(prompt: &str) -> Vec<Piece<'_>> {
    let open = format!("<__corral_media_{}_", key());
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let tag = after.find("__>").and_then(|end| after[..end].parse::<usize>().ok().map(|n| (n, end)));
        match tag {
            Some((n, end)) => {
                out.push(Piece::Text(&rest[..i]));
                let len = open.len() + end + 3;
                out.push(Piece::Tag { n, text: &rest[i..i + len] });
                rest = &rest[i + len..];
            }
            None => {
                out.push(Piece::Text(&rest[..i + open.len()]));
                rest = after;
            }
        }
    }
    out.push(Piece::Text(rest));
    out
}

/// Takes the tags out of a rendered `prompt`: the prompt without them, and each tagged image at
/// its offset. An image whose tag the rendering dropped is not sent; one whose tag it wrote twice
/// is sent once, at its first place.
pub fn place(prompt: &str, mut images: Vec<Vec<u8>>) -> (String, Vec<Media>) {
    let mut sent = vec![false; images.len()];
    let mut out = String::with_capacity(prompt.len());
    let mut media = Vec::new();
    for piece in pieces(prompt) {
        match piece {
            Piece::Tag { n, .. } if n < images.len() => {
                if !std::mem::replace(&mut sent[n], true) {
                    media.push(Media { at: out.len(), data: std::mem::take(&mut images[n]) });
                }
            }
            Piece::Tag { text, .. } | Piece::Text(text) => out.push_str(text),
        }
    }
    (out, media)
}

/// A rendered prompt without its tags, and how many images they mark (a tag written twice counts
/// once, as its image is sent once).
pub fn without_tags(prompt: &str) -> (String, usize) {
    let mut out = String::with_capacity(prompt.len());
    let mut images = std::collections::BTreeSet::new();
    for piece in pieces(prompt) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Tag { n, .. } => {
                images.insert(n);
            }
        }
    }
    (out, images.len())
}

/// A rendered prompt as `_debug_render_only` shows it: each tag as Ollama's `[img-N]`.
pub fn show_tags(prompt: &str) -> String {
    pieces(prompt)
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.to_string(),
            Piece::Tag { n, .. } => format!("[img-{n}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut d = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        d.extend(w.to_be_bytes());
        d.extend(h.to_be_bytes());
        d.extend([8, 2, 0, 0, 0]);
        d
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    #[test]
    fn formats_are_read_from_the_bytes() {
        assert_eq!(Format::sniff(&png_header(1, 1)), Some(Format::Png));
        assert_eq!(Format::sniff(b"\xff\xd8\xff\xe0"), Some(Format::Jpeg));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WAVEfmt "), Some(Format::Wav));
        assert_eq!(Format::sniff(b"fLaC"), Some(Format::Flac));
        assert_eq!(Format::sniff(b"ID3\x04"), Some(Format::Mp3));
        assert_eq!(Format::sniff(b"<svg xmlns="), None);
        assert_eq!(Format::sniff(b""), None);
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_decoding() {
        let err = decode(2, &b64(&png_header(100_000, 100_000))).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.message.contains("image 2 is 100000x100000 pixels"), "{}", err.message);
        assert!(decode(0, &b64(&png_header(640, 480))).is_ok());
    }

    #[test]
    fn bad_images_get_a_400_naming_them() {
        let e = decode(0, "not base64!").unwrap_err();
        assert!(e.message.starts_with("invalid image input: image 0 is not valid base64"), "{}", e.message);
        let e = decode(1, &b64(b"GIF89a")).unwrap_err();
        assert!(e.message.contains("image 1 (Gif, 6 bytes) is truncated"), "{}", e.message);
        let e = decode(3, &b64(b"hello world")).unwrap_err();
        assert!(e.message.contains("starting 68656c6c6f20776f"), "{}", e.message);
    }

    #[test]
    fn webp_is_sent_as_the_same_pixels_in_a_bmp() {
        // 3×2 pixels, lossless, each its own colour.
        let rgb: Vec<u8> = (0..18).map(|i| (i * 13) as u8).collect();
        let mut webp = Vec::new();
        image_webp::WebPEncoder::new(&mut webp).encode(&rgb, 3, 2, image_webp::ColorType::Rgb8).unwrap();
        assert_eq!(Format::sniff(&webp), Some(Format::Webp));
        assert_eq!(dimensions(Format::Webp, &webp), Some((3, 2)));
        let out = decode(0, &b64(&webp)).unwrap();
        assert_eq!(Format::sniff(&out), Some(Format::Bmp));
        assert_eq!(dimensions(Format::Bmp, &out), Some((3, 2)));
        // Rows of 9 bytes padded to 12, bottom row first, BGR.
        assert_eq!(out.len(), 54 + 2 * 12);
        assert_eq!(&out[54..57], &[rgb[11], rgb[10], rgb[9]]);
        assert_eq!(&out[66..69], &[rgb[2], rgb[1], rgb[0]]);
        // A WebP cut short is a 400, not a panic.
        let e = decode(1, &b64(&webp[..webp.len() / 2])).unwrap_err();
        assert!(e.message.starts_with("invalid image input: image 1"), "{}", e.message);
    }

    #[test]
    fn jpeg_size_comes_from_its_frame_header() {
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 300 and width 400.
        let mut d = vec![0xff, 0xd8, 0xff, 0xe0, 0, 16];
        d.extend([0; 14]);
        d.extend([0xff, 0xc0, 0, 17, 8, 1, 44, 1, 144, 3]);
        assert_eq!(jpeg_dimensions(&d), Some((400, 300)));
        assert_eq!(jpeg_dimensions(&d[..20]), None);
    }

    #[test]
    fn tags_mark_each_image_and_come_out_as_offsets() {
        let png = b64(&png_header(2, 2));
        let mut messages = vec![
            Message {
                role: "user".into(),
                content: "first".into(),
                images: Some(vec![png.clone()]),
                ..Default::default()
            },
            Message {
                role: "user".into(),
                content: "a [img] then b".into(),
                images: Some(vec![png.clone(), png]),
                ..Default::default()
            },
        ];
        let images = attach(&mut messages).unwrap();
        assert_eq!(images.len(), 3);
        assert!(messages.iter().all(|m| m.images.is_none()));
        assert_eq!(messages[1].content, format!("{}a {} then b", tag(2), tag(1)));
        let rendered = format!("<u>{}</u><u>{}</u>", messages[0].content, messages[1].content);
        assert_eq!(show_tags(&rendered), "<u>[img-0]first</u><u>[img-2]a [img-1] then b</u>");
        let (prompt, media) = place(&rendered, images.clone());
        assert_eq!(prompt, "<u>first</u><u>a  then b</u>");
        assert_eq!(media.iter().map(|m| m.at).collect::<Vec<_>>(), [3, 15, 17]);
        // A template that writes a message twice sends its image once.
        let (prompt, media) = place(&format!("{}|{}", messages[0].content, messages[0].content), images);
        assert_eq!(prompt, "first|first");
        assert_eq!(media.len(), 1);
        assert!(!media[0].data.is_empty());
    }

    #[test]
    fn tags_are_counted_for_fitting() {
        let prompt = format!("a{}b{}c", tag(0), tag(5));
        assert_eq!(without_tags(&prompt), ("abc".to_string(), 2));
        assert_eq!(without_tags("plain"), ("plain".to_string(), 0));
        // A tag written twice marks one image.
        assert_eq!(without_tags(&format!("{}{}", tag(1), tag(1))), (String::new(), 1));
    }

    #[test]
    fn only_tags_are_shown_as_image_numbers() {
        let prompt = format!("x__> {} <__corral_media_0_1__>", tag(3));
        assert_eq!(show_tags(&prompt), "x__> [img-3] <__corral_media_0_1__>");
    }

    #[test]
    fn text_that_looks_like_a_tag_stays_text() {
        let (prompt, media) = place("<__corral_media_0000_0__> and <__media__>", vec![vec![1]]);
        assert_eq!(prompt, "<__corral_media_0000_0__> and <__media__>");
        assert!(media.is_empty());
        // The real key with an index beyond the images stays text too.
        let fake = format!("<__corral_media_{}_9__>", key());
        assert_eq!(place(&fake, vec![]).0, fake);
    }
}
