//! The chat page: joins the room named by the link's fragment, shows its messages, images and
//! files, and sends new ones, encrypted before they leave the page.
//!
//! - `dom`: the page's elements and message rows, built as text, never as HTML.
//! - `connection`: the event stream, reconnecting with backoff and resuming where it stopped.
//! - `receive`: decrypting events within a budget of key derivations, and showing them.
//! - `outbox`: messages waiting to be published, retried until the relay accepts them.
//! - `attach`: files and images from the picker, drag and drop, and paste: re-encoding,
//!   encryption and upload.
//! - `download`: fetching, checking and decrypting the blobs that messages announce.
//! - `share`: the invite panel (room link, copy button, QR code) and creating rooms.
//! - `timer`: sleeping in async code, and the clock.
//! - this module: start-up, the room lifecycle, the composer and the passphrase prompt.

mod attach;
mod connection;
mod dom;
mod download;
mod outbox;
mod receive;
mod share;
mod timer;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Event, KeyboardEvent, Window};
use zeroize::Zeroizing;

use crate::link::{LinkError, RoomLink, RoomSecret, is_loopback_host};
use crate::message::{
    Body, MAX_TEXT_BYTES, Message, MessageId, clean_message_text, clean_nick, size_and_limit,
};
use dom::{Elements, Status};

/// Key under which the nick is remembered in localStorage. Nothing else is stored: not the
/// room link, its key or a passphrase.
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

    let app = Rc::new(App {
        window,
        elements: Rc::new(elements),
        room: RefCell::new(None),
    });
    app.restore_nick();
    app.warn_if_insecure()?;
    app.wire_composer()?;
    app.wire_unlock()?;
    app.wire_navigation()?;
    attach::wire(&app)?;
    download::wire_buttons(&app)?;
    share::wire(&app)?;
    app.enter_from_location()?;
    Ok(())
}

/// The page: its elements and the room it shows.
pub struct App {
    window: Window,
    elements: Rc<Elements>,
    /// The room shown now; replaced when the address names another room.
    room: RefCell<Option<Rc<Room>>>,
}

/// One joined room: its link and secret, its connection, what it received and what it sends.
/// Dropped when the page switches rooms; [`Room::close`] first stops its connection and tasks.
pub struct Room {
    window: Window,
    elements: Rc<Elements>,
    link: RoomLink,
    /// The channel id derived from the fragment, the only room name the server receives.
    channel: String,
    /// The envelope password; `None` until a passphrase room is unlocked.
    secret: RefCell<Option<RoomSecret>>,
    /// Set when the page leaves the room, so its pending tasks stop.
    closed: Cell<bool>,
    connection: connection::Connection,
    receiver: RefCell<receive::Receiver>,
    outbox: outbox::Outbox,
    downloads: download::Downloads,
}

impl App {
    /// Joins the room in the address bar, creating a new room when there is no fragment.
    fn enter_from_location(self: &Rc<Self>) -> Result<(), JsValue> {
        let hash = Zeroizing::new(self.window.location().hash()?);
        if hash.len() <= 1 {
            let link = RoomLink::generate_open().map_err(|e| JsValue::from_str(&e.to_string()))?;
            // replaceState changes the address without a reload and without a history entry,
            // so Back leaves the room rather than returning to the bare address.
            self.window.history()?.replace_state_with_url(
                &JsValue::NULL,
                "",
                Some(&link.fragment()),
            )?;
            let secret = link.open_secret();
            self.enter(link, secret);
            return Ok(());
        }

        match RoomLink::parse(&hash) {
            Ok(link) => {
                let secret = link.open_secret();
                self.enter(link, secret);
            }
            Err(e) => {
                self.leave_room();
                self.elements.show_invalid_link(&e.to_string());
            }
        }
        Ok(())
    }

    /// Leaves the current room, if any, and shows `link`. Without a secret the page prompts
    /// for the passphrase before it connects.
    fn enter(self: &Rc<Self>, link: RoomLink, secret: Option<RoomSecret>) {
        self.leave_room();
        self.elements.hide_invalid_link();
        let room = Rc::new(Room {
            window: self.window.clone(),
            elements: self.elements.clone(),
            channel: link.channel_id(),
            link,
            secret: RefCell::new(secret),
            closed: Cell::new(false),
            connection: connection::Connection::default(),
            receiver: RefCell::new(receive::Receiver::default()),
            outbox: outbox::Outbox::default(),
            downloads: download::Downloads::default(),
        });
        *self.room.borrow_mut() = Some(room.clone());
        share::show_room(self, &room);

        if room.secret.borrow().is_some() {
            self.show_unlock(false);
            connection::connect(&room);
        } else {
            self.elements.set_status(Status::Locked);
            self.elements.set_count(None);
            self.show_unlock(true);
        }
    }

    fn leave_room(&self) {
        if let Some(room) = self.room.borrow_mut().take() {
            room.close();
        }
        self.elements.clear_messages();
    }

    fn current_room(&self) -> Option<Rc<Room>> {
        self.room.borrow().clone()
    }

    fn show_unlock(&self, locked: bool) {
        let elements = &self.elements;
        elements.unlock.set_hidden(!locked);
        elements.set_composer_enabled(!locked);
        elements.unlock_error.set_text_content(None);
        if locked {
            let _ = elements.unlock_passphrase.focus();
        }
    }

    /// Checks the passphrase typed into the prompt and connects when it is right.
    fn unlock(self: &Rc<Self>) {
        let Some(room) = self.current_room() else {
            return;
        };
        let input = &self.elements.unlock_passphrase;
        let passphrase = Zeroizing::new(input.value());
        match room.link.unlock(&passphrase) {
            Ok(secret) => {
                input.set_value("");
                *room.secret.borrow_mut() = Some(secret);
                self.show_unlock(false);
                let _ = self.elements.text.focus();
                connection::connect(&room);
            }
            Err(LinkError::WrongPassphrase) => {
                self.elements
                    .unlock_error
                    .set_text_content(Some("That passphrase is wrong for this room."));
                input.select();
                let _ = input.focus();
            }
            Err(e) => self
                .elements
                .unlock_error
                .set_text_content(Some(&e.to_string())),
        }
    }

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

    /// Shows the warning when the page came over plain HTTP from a host other than this
    /// machine: anyone on the network path could have changed the page and read the key.
    fn warn_if_insecure(&self) -> Result<(), JsValue> {
        let location = self.window.location();
        let insecure = location.protocol()? == "http:" && !is_loopback_host(&location.hostname()?);
        self.elements.insecure_warning.set_hidden(!insecure);
        Ok(())
    }

    /// Sends on submit, and on Enter in the message field (Shift+Enter inserts a new line).
    fn wire_composer(self: &Rc<Self>) -> Result<(), JsValue> {
        let app = self.clone();
        listen(&self.elements.form, "submit", move |event| {
            event.prevent_default();
            app.send_from_composer();
        })?;

        let form = self.elements.form.clone();
        listen(&self.elements.text, "keydown", move |event| {
            let Some(key) = event.dyn_ref::<KeyboardEvent>() else {
                return;
            };
            if key.key() == "Enter" && !key.shift_key() && !key.is_composing() {
                event.prevent_default();
                let _ = form.request_submit();
            }
        })?;

        let app = self.clone();
        listen(&self.elements.nick, "change", move |_| {
            let nick = clean_nick(&app.elements.nick.value());
            app.remember_nick(&nick);
        })
    }

    fn wire_unlock(self: &Rc<Self>) -> Result<(), JsValue> {
        let app = self.clone();
        listen(&self.elements.unlock, "submit", move |event| {
            event.prevent_default();
            app.unlock();
        })
    }

    /// Follows the address when another room link is pasted into it, and the browser's
    /// network state.
    fn wire_navigation(self: &Rc<Self>) -> Result<(), JsValue> {
        let app = self.clone();
        listen(&self.window, "hashchange", move |_| {
            let hash = Zeroizing::new(app.window.location().hash().unwrap_or_default());
            let same = app
                .current_room()
                .is_some_and(|room| *room.link.fragment() == *hash);
            if !same {
                let _ = app.enter_from_location();
            }
        })?;

        let app = self.clone();
        listen(&self.window, "online", move |_| {
            if let Some(room) = app.current_room() {
                connection::network_returned(&room);
            }
        })?;
        let app = self.clone();
        listen(&self.window, "offline", move |_| {
            if let Some(room) = app.current_room() {
                connection::network_lost(&room);
            }
        })?;

        let app = self.clone();
        listen(&self.window, "pagehide", move |_| {
            if let Some(room) = app.current_room() {
                room.close();
            }
        })?;

        // A page restored from the back-forward cache had its room closed by `pagehide`, so
        // it joins again.
        let app = self.clone();
        listen(&self.window, "pageshow", move |event| {
            let restored = event
                .dyn_ref::<web_sys::PageTransitionEvent>()
                .is_some_and(|event| event.persisted());
            if restored {
                let _ = app.enter_from_location();
            }
        })
    }

    fn send_from_composer(self: &Rc<Self>) {
        let Some(room) = self.current_room() else {
            return;
        };
        // Cleaned as every receiver cleans it, so this page's row shows what they show.
        let text = clean_message_text(&self.elements.text.value());
        if text.trim().is_empty() {
            return;
        }
        if text.len() > MAX_TEXT_BYTES {
            let (size, limit) = size_and_limit(text.len() as u64, MAX_TEXT_BYTES as u64);
            self.elements.show_notice(&format!(
                "This message is too long to send: {size} of text, and the limit is {limit}. \
                 Shorten it, or send it as a file."
            ));
            return;
        }
        let Some(message) = room.new_message(Body::Text(text)) else {
            return;
        };
        self.remember_nick(&message.nick);
        self.elements.text.set_value("");
        let _ = self.elements.text.focus();
        room.send(message);
    }
}

impl Room {
    /// Starts a message from this page, with a new id and the nick in the form.
    fn new_message(&self, body: Body) -> Option<Message> {
        let id = match MessageId::random() {
            Ok(id) => id,
            Err(e) => {
                self.elements
                    .show_notice(&format!("Cannot send: the random source failed: {e}."));
                return None;
            }
        };
        Some(Message {
            id,
            nick: clean_nick(&self.elements.nick.value()),
            sent: js_sys::Date::now() as u64,
            body,
        })
    }

    /// Shows a message of this page as pending and hands it to the outbox.
    fn send(self: &Rc<Self>, message: Message) {
        let Some(row) = receive::show_message(self, &message, true) else {
            return;
        };
        self.receiver.borrow_mut().remember(&message.id);
        outbox::enqueue(self, message, row);
    }

    /// Returns the envelope password, once the room is unlocked.
    fn secret(&self) -> Option<RoomSecret> {
        self.secret.borrow().clone()
    }

    /// Stops the connection and every task of this room.
    fn close(&self) {
        self.closed.set(true);
        connection::disconnect(self);
    }
}

/// Adds an event listener that lives as long as the page.
fn listen(
    target: &web_sys::EventTarget,
    event: &str,
    handler: impl FnMut(Event) + 'static,
) -> Result<(), JsValue> {
    let closure = Closure::<dyn FnMut(Event)>::new(handler);
    target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref())?;
    // The page's own elements live as long as the page, and so do their listeners.
    closure.forget();
    Ok(())
}

/// Turns a JavaScript exception into a clause for the user's messages (see [`as_clause`]).
fn describe(error: &JsValue) -> String {
    let text = match error.as_string() {
        Some(text) => text,
        None => error
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_default(),
    };
    as_clause(&text)
}

/// Fits a browser's error sentence into the page's messages, which put it after a colon and
/// end the sentence themselves. The final period goes, and a capital letter that starts an
/// ordinary word is lowered: "The source image cannot be decoded." becomes "the source image
/// cannot be decoded", while "NetworkError when…" keeps its capital.
fn as_clause(text: &str) -> String {
    let text = text.trim().trim_end_matches(['.', ' ']);
    if text.is_empty() {
        return "unknown error".to_owned();
    }

    // Only a first word with no other capital letter or digit is an ordinary word.
    let first_word = text.split_whitespace().next().unwrap_or_default();
    let mut letters = first_word.chars();
    let ordinary = letters.next().is_some_and(char::is_uppercase)
        && letters.all(|c| !c.is_uppercase() && !c.is_ascii_digit());
    if !ordinary {
        return text.to_owned();
    }
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::as_clause;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn browser_errors_become_clauses() {
        let cases = [
            (
                "The source image cannot be decoded.",
                "the source image cannot be decoded",
            ),
            ("Failed to fetch", "failed to fetch"),
            (
                "NetworkError when attempting to fetch resource.",
                "NetworkError when attempting to fetch resource",
            ),
            ("JSON.parse: bad", "JSON.parse: bad"),
            ("A2 failed...", "A2 failed"),
            (" . ", "unknown error"),
            ("", "unknown error"),
        ];
        for (browser, clause) in cases {
            assert_eq!(as_clause(browser), clause, "{browser:?}");
        }
    }
}
