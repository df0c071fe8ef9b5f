//! JSON request bodies, bounded, with Ollama's error messages; and the context-length header of
//! the OpenAI and Anthropic routes ([`ContextHint`]).
//!
//! A body may come compressed (`Content-Encoding`): Codex sends its requests with zstd, other
//! clients gzip or deflate. It is decoded here, bounded by the same limit once decoded, so that a
//! small body that inflates to gigabytes is a 413 and not an allocation.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use corral_types::api::CONTEXT_HEADER;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// A JSON body of at most `max_body_bytes`. Empty → 400 `missing request body`; malformed →
/// 400 with the decoder's message; too large → 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let too_large =
            || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {limit} bytes"));
        let declared =
            req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let encoding = req
            .headers()
            .get(axum::http::header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
            Err(e) => return Err(ApiError::bad_request(format!("could not read request body: {e}"))),
        };
        let bytes = decode(encoding.as_deref(), bytes, limit)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("missing request body"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::bad_request(e.to_string()))
    }
}

/// The context length a request asks for in [`CONTEXT_HEADER`] (`corral launch` sets it for
/// coding agents, whose first prompt alone can be 20,000 tokens), if any; it counts as the
/// request's own `num_ctx`. A value that is not a whole number of tokens is a 400 naming it.
pub struct ContextHint(pub Option<u32>);

impl ContextHint {
    /// `options` with the hint as its `num_ctx` where the request set none itself.
    pub fn apply(&self, options: &mut corral_types::params::Options) {
        if options.num_ctx.is_none() {
            options.num_ctx = self.0.map(i64::from);
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ContextHint {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(CONTEXT_HEADER) else { return Ok(ContextHint(None)) };
        let text = String::from_utf8_lossy(value.as_bytes());
        match text.trim().parse::<u32>() {
            Ok(n) if n >= 4 => Ok(ContextHint(Some(n))),
            _ => Err(ApiError::bad_request(format!(
                "{} must be a number of tokens (4 or more), got {:?}",
                CONTEXT_HEADER.to_ascii_lowercase(),
                text.chars().take(64).collect::<String>()
            ))),
        }
    }
}

/// `bytes` decoded by their `Content-Encoding`, at most `limit` bytes of it.
fn decode(encoding: Option<&str>, bytes: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let reader: Box<dyn Read + '_> = match encoding {
        None | Some("" | "identity") => return Ok(bytes),
        Some("zstd") => match ruzstd::decoding::StreamingDecoder::new(&bytes[..]) {
            Ok(d) => Box::new(d),
            Err(e) => return Err(ApiError::bad_request(format!("could not decode the zstd request body: {e}"))),
        },
        Some("gzip" | "x-gzip") => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&bytes[..])),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Encoding {other:?}: send the body as it is, or with zstd, gzip or deflate"
                ),
            ))
        }
    };
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| {
        ApiError::bad_request(format!("could not decode the {} request body: {e}", encoding.unwrap_or_default()))
    })?;
    if out.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes once decoded"),
        ));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd(data: &[u8]) -> Bytes {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest).into()
    }

    #[test]
    fn bodies_are_decoded_by_their_encoding() {
        let json = br#"{"model":"m","messages":[]}"#;
        assert_eq!(&decode(Some("zstd"), zstd(json), 1000).unwrap()[..], json);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, json).unwrap();
        assert_eq!(&decode(Some("gzip"), gz.finish().unwrap().into(), 1000).unwrap()[..], json);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, json).unwrap();
        assert_eq!(&decode(Some("deflate"), z.finish().unwrap().into(), 1000).unwrap()[..], json);
        assert_eq!(&decode(None, Bytes::from_static(json), 1000).unwrap()[..], json);
    }

    #[test]
    fn a_bomb_an_unknown_encoding_and_garbage_are_refused() {
        // 10 MB of zeros compress to a few hundred bytes.
        let bomb = zstd(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let e = decode(Some("zstd"), bomb, 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.message, "request body is larger than 1048576 bytes once decoded");
        let e = decode(Some("br"), Bytes::from_static(b"x"), 10).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.message.starts_with("unsupported Content-Encoding \"br\""), "{}", e.message);
        let e = decode(Some("zstd"), Bytes::from_static(b"not zstd at all"), 1000).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("could not decode the zstd request body"), "{}", e.message);
        let e = decode(Some("gzip"), Bytes::from_static(b"not gzip"), 1000).unwrap_err();
        assert!(e.message.starts_with("could not decode the gzip request body"), "{}", e.message);
    }
}
