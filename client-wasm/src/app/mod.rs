//! The chat page: joins the room named by the link's fragment, shows its messages and sends new
//! ones, encrypted before they leave the page.
//!
//! - `dom`: finding the page's elements and building message rows as text, never as HTML.
//! - `connection`: the EventSource subscription and the connection indicator.
//! - this module: start-up, the room link, and sending.

mod connection;
mod dom;

use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlFormElement, HtmlInputElement, HtmlTextAreaElement, KeyboardEvent, Window};

use crate::crypto::room::{Fragment, RoomKey};
use crate::message::ChatMessage;
use dom::Elements;

/// Key under which the nick is remembered in localStorage.
const NICK_STORAGE_KEY: &str = "dropthat.nick";

/// Starts the page when the module loads. Outside a page with the chat's markup (for example
/// when the module is imported only for its cryptography) it does nothing.
#[wasm_bindgen(start)]
pub fn start() -> Result<(), JsValue> {
    let Some(window) = web_sys::window() else {
        return Ok(());
    };
    let Some(elements) = Elements::find(&window)? else {
        return Ok(());
    };

    let fragment = match room_from_location(&window)? {
        Ok(fragment) => fragment,
        Err(message) => {
            elements.show_fatal(&message);
            return Ok(());
        }
    };

    let page = Rc::new(Page {
        channel: fragment.channel_id(),
        fragment,
        window,
        elements,
    });
    page.restore_nick();
    page.wire_composer()?;
    connection::connect(page.clone())?;
    Ok(())
}

/// The running page: its room and its elements.
struct Page {
    /// The room's fragment, which is also the envelope password. Never sent anywhere.
    fragment: Fragment,
    /// The channel id derived from the fragment, the only room name the server sees.
    channel: String,
    window: Window,
    elements: Elements,
}

/// Reads the room from the address bar, creating a new room when there is no fragment.
///
/// Returns `Ok(Err(message))` for a fragment that is not a valid room key.
fn room_from_location(window: &Window) -> Result<Result<Fragment, String>, JsValue> {
    let hash = window.location().hash()?;
    if hash.len() <= 1 {
        let key = RoomKey::generate().map_err(|e| JsValue::from_str(&e.to_string()))?;
        let fragment = key.fragment();
        // replaceState changes the address without a reload and without a history entry, so
        // Back leaves the room rather than returning to the bare address.
        window
            .history()?
            .replace_state_with_url(&JsValue::NULL, "", Some(fragment.expose()))?;
        return Ok(Ok(fragment));
    }

    Ok(match RoomKey::from_fragment(&hash) {
        Ok(key) => Ok(key.fragment()),
        Err(e) => Err(format!("This link does not name a room: {e}.")),
    })
}

impl Page {
    fn restore_nick(&self) {
        let stored = self
            .window
            .local_storage()
            .ok()
            .flatten()
            .and_then(|storage| storage.get_item(NICK_STORAGE_KEY).ok().flatten());
        if let Some(nick) = stored {
            self.elements.nick.set_value(&nick);
        }
    }

    fn remember_nick(&self, nick: &str) {
        if let Ok(Some(storage)) = self.window.local_storage() {
            // Storage can be full or disabled; the nick is a convenience, so ignore that.
            let _ = storage.set_item(NICK_STORAGE_KEY, nick);
        }
    }

    /// Sends on submit, and on Enter in the message field (Shift+Enter inserts a new line).
    fn wire_composer(self: &Rc<Self>) -> Result<(), JsValue> {
        let page = self.clone();
        let on_submit = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            event.prevent_default();
            page.send_from_composer();
        });
        self.elements
            .form
            .add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref())?;
        // The listener lives as long as the page.
        on_submit.forget();

        let form: HtmlFormElement = self.elements.form.clone();
        let on_key = Closure::<dyn FnMut(KeyboardEvent)>::new(move |event: KeyboardEvent| {
            if event.key() == "Enter" && !event.shift_key() && !event.is_composing() {
                event.prevent_default();
                let _ = form.request_submit();
            }
        });
        self.elements
            .text
            .add_event_listener_with_callback("keydown", on_key.as_ref().unchecked_ref())?;
        on_key.forget();
        Ok(())
    }

    fn send_from_composer(self: &Rc<Self>) {
        let text = self.elements.text.value();
        if text.trim().is_empty() {
            return;
        }
        let nick = nick_or_default(&self.elements.nick);
        self.remember_nick(&nick);

        let message = ChatMessage::Text {
            nick,
            sent: js_sys::Date::now() as u64,
            text,
        };
        let plaintext = match serde_json::to_string(&message) {
            Ok(json) => json,
            Err(e) => {
                return self
                    .elements
                    .show_notice(&format!("Cannot encode the message: {e}"));
            }
        };
        let envelope = match crate::api::encrypt_text(self.fragment.expose(), &plaintext) {
            Ok(envelope) => envelope,
            Err(e) => return self.elements.show_notice(&format!("Cannot encrypt: {e}")),
        };

        clear_text(&self.elements.text);
        let page = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = page.post_envelope(envelope).await {
                page.elements
                    .show_notice(&format!("The message was not sent: {}", describe(&e)));
            }
        });
    }

    async fn post_envelope(&self, envelope: String) -> Result<(), JsValue> {
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(&envelope));
        let headers = web_sys::Headers::new()?;
        headers.set("Content-Type", "application/json")?;
        init.set_headers(&headers);

        let url = format!("/pub/{}", self.channel);
        let request = web_sys::Request::new_with_str_and_init(&url, &init)?;
        let response: web_sys::Response = JsFuture::from(self.window.fetch_with_request(&request))
            .await?
            .dyn_into()?;
        if response.ok() {
            return Ok(());
        }
        let body = JsFuture::from(response.text()?).await?;
        Err(JsValue::from_str(&format!(
            "the server answered {}: {}",
            response.status(),
            body.as_string().unwrap_or_default().trim()
        )))
    }
}

fn nick_or_default(input: &HtmlInputElement) -> String {
    let nick = input.value().trim().to_owned();
    if nick.is_empty() {
        "anonymous".to_owned()
    } else {
        nick
    }
}

fn clear_text(text: &HtmlTextAreaElement) {
    text.set_value("");
    let _ = text.focus();
}

/// Turns a JavaScript exception into a short message for the user.
fn describe(error: &JsValue) -> String {
    if let Some(text) = error.as_string() {
        return text;
    }
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| "unknown error".to_owned())
}
