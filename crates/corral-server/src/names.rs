//! Model names as requests give them.

use corral_types::{ModelName, NameError};

use crate::ApiError;

/// Parses a model name from a request, with Ollama's messages for empty and invalid names.
pub fn parse_name(raw: &str) -> Result<ModelName, ApiError> {
    ModelName::parse(raw).map_err(|e| match e {
        NameError::Empty => ApiError::bad_request("model is required"),
        NameError::Invalid { .. } => ApiError::bad_request("invalid model name"),
    })
}
