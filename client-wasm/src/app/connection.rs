//! The subscription to the room's channel: an EventSource on `/sub/<channel>`.
//!
//! The browser reconnects by itself after a dropped connection; this module shows the state,
//! keeps the subscriber count current, and decrypts each event into a row of the list.

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Event, EventSource, MessageEvent};

use super::Page;
use super::dom::Status;
use crate::message::{ChatMessage, Received};

/// Opens the event stream and installs its handlers, which live as long as the page.
pub fn connect(page: Rc<Page>) -> Result<(), JsValue> {
    page.elements.set_status(Status::Connecting);
    let source = EventSource::new(&format!("/sub/{}", page.channel))?;

    let on_open = {
        let page = page.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| page.elements.set_status(Status::Connected))
    };
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    on_open.forget();

    let on_error = {
        let page = page.clone();
        let source = source.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| {
            let status = if source.ready_state() == EventSource::CLOSED {
                Status::Offline
            } else {
                Status::Reconnecting
            };
            page.elements.set_status(status);
        })
    };
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();

    let on_message = {
        let page = page.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(data) = event.data().as_string() {
                page.receive(&data);
            }
        })
    };
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();

    let on_count = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let count = event
            .data()
            .as_string()
            .and_then(|data| data.strip_prefix("count=")?.parse::<u32>().ok());
        if let Some(count) = count {
            page.elements.set_count(count);
        }
    });
    source.add_event_listener_with_callback("count", on_count.as_ref().unchecked_ref())?;
    on_count.forget();
    Ok(())
}

impl Page {
    /// Decrypts one event and shows it, or a notice when it cannot be read.
    fn receive(&self, envelope: &str) {
        let plaintext = match crate::api::decrypt_text(self.fragment.expose(), envelope) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                self.elements
                    .show_notice(&format!("A message could not be read: {e}."));
                return;
            }
        };

        match Received::classify(plaintext) {
            Received::Message(ChatMessage::Text { nick, sent, text }) => {
                self.elements.show_message(&nick, sent, &text)
            }
            Received::Plain(text) => self.elements.show_plain(&text),
            Received::Invalid { reason } => self
                .elements
                .show_notice(&format!("A message had an unexpected format: {reason}.")),
        }
    }
}
