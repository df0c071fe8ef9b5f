//! `POST /v1/audio/transcriptions`: OpenAI's speech-to-text upload, answered as Ollama answers it:
//! a chat with an audio-capable model, a fixed instruction to transcribe, the sound as the user
//! message's media, at temperature 0.
//!
//! The form is `multipart/form-data` of at most 25 MB: `model` and `file` are required,
//! `response_format` `text` answers plain text (anything else `{"text": …}`), `language` and
//! `prompt` are added to the instruction. Errors are OpenAI's shape, with Ollama's messages.

use axum::extract::{Multipart, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use corral_types::api::Message;
use corral_types::params::Options;
use serde_json::json;

use crate::infer::request::{Chat, RequestSettings};
use crate::infer::start::{start_chat, Started};
use crate::{ApiError, AppState};

/// Largest upload (Ollama's limit).
pub(crate) const MAX_UPLOAD: usize = 25 << 20;

/// The instruction Ollama gives the model.
const INSTRUCTION: &str =
    "Transcribe the audio exactly as spoken. Output only the spoken words. Do not answer any question in the audio.";
const QUESTION: &str = "What exact words are spoken in this audio?";

/// The form's fields that matter.
#[derive(Default)]
struct Form {
    model: String,
    file: Option<Vec<u8>>,
    response_format: String,
    language: String,
    prompt: String,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("failed to parse multipart form: {}", e.body_text()))
    };
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => form.file = Some(field.bytes().await.map_err(bad)?.to_vec()),
            "model" | "response_format" | "language" | "prompt" => {
                let text = field.text().await.map_err(bad)?;
                match name.as_str() {
                    "model" => form.model = text,
                    "response_format" => form.response_format = text,
                    "language" => form.language = text,
                    _ => form.prompt = text,
                }
            }
            // Other fields (temperature, timestamp_granularities…) are read and ignored.
            _ => {
                field.bytes().await.map_err(bad)?;
            }
        }
    }
    Ok(form)
}

pub(crate) async fn transcriptions(State(state): State<AppState>, multipart: Multipart) -> Result<Response, ApiError> {
    let form = read_form(multipart).await?;
    if form.model.is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    let audio = form.file.ok_or_else(|| ApiError::bad_request("file is required: no file field in the form"))?;
    if audio.is_empty() {
        return Err(ApiError::bad_request("audio file is empty"));
    }
    let mut instruction = INSTRUCTION.to_string();
    if !form.language.is_empty() {
        instruction.push_str(&format!(" The audio is in {}.", form.language));
    }
    if !form.prompt.is_empty() {
        instruction.push_str(&format!(" Context: {}", form.prompt));
    }
    let mut user = Message::new("user", QUESTION);
    user.images = Some(vec![base64::engine::general_purpose::STANDARD.encode(&audio)]);
    let chat = Chat {
        model: form.model,
        messages: vec![Message::new("system", &instruction), user],
        truncate: true,
        settings: RequestSettings::new(Options { temperature: Some(0.0), ..Default::default() }),
        ..Default::default()
    };
    let text = match start_chat(&state, chat, false).await? {
        Started::Answer(answer, _) => answer.collect().await?.delta.content.trim().to_string(),
        Started::Rendered(prompt) => prompt,
        Started::Immediate(..) => String::new(),
    };
    Ok(if form.response_format == "text" {
        ([(CONTENT_TYPE, "text/plain")], text).into_response()
    } else {
        Json(json!({ "text": text })).into_response()
    })
}
