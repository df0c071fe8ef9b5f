//! What a Modelfile (or a create request) layers on top of a model's weights: the parts that
//! become the template, system, license, params and messages layers and a few config fields.
//! One type carries them from the Modelfile parser through the CLI to the store.

use serde_json::{Map, Value};

use crate::api::Message;

/// The non-weight parts of a model recipe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// Replaces the base model's template (the last TEMPLATE wins).
    pub template: Option<String>,
    /// Replaces the base model's system message (the last SYSTEM wins).
    pub system: Option<String>,
    /// Appended to the base model's licenses, in order.
    pub license: Vec<String>,
    /// Typed parameters, merged over the base model's (repeated `stop`s form one list).
    pub parameters: Map<String, Value>,
    /// Replaces the base model's messages when non-empty.
    pub messages: Vec<Message>,
    /// Minimum server version, without a leading `v`.
    pub requires: Option<String>,
    pub renderer: Option<String>,
    pub parser: Option<String>,
}
