//! The page's elements, and the rows the page adds to the message list.
//!
//! Everything a room member sent is inserted with `textContent` or as an attribute value, so
//! markup in a message shows as text and never becomes part of the page. Each nick, text and
//! file name is also isolated in a `<bdi>` or an element with `dir="auto"`. So right-to-left
//! text or a stray direction character in it cannot reorder the words around it.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    Document, Element, HtmlButtonElement, HtmlDialogElement, HtmlElement, HtmlFormElement,
    HtmlInputElement, HtmlProgressElement, HtmlTextAreaElement, Window,
};

/// Most rows the message list keeps; older rows are removed with their `blob:` URLs.
pub const MAX_ROWS: u32 = 500;

/// Maximum text shown from a plaintext that is not one of our messages, in characters.
pub const MAX_PLAIN_CHARS: usize = 16 * 1024;

/// The state shown by the connection indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Reconnecting,
    Offline,
    /// Waiting for the passphrase before joining.
    Locked,
    /// The address names no room, so the page does not connect.
    InvalidLink,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Offline => "offline",
            Self::Locked => "locked",
            Self::InvalidLink => "invalid link",
        }
    }

    /// Returns the class that colors the indicator's dot in style.css.
    fn class(self) -> &'static str {
        match self {
            Self::InvalidLink => "invalid",
            other => other.label(),
        }
    }
}

/// A piece of a line of text: the page's own words, or text from a room member (or from a
/// local file's name), which is isolated in a `<bdi>`.
#[derive(Clone, Copy)]
pub enum Piece<'a> {
    Page(&'a str),
    Peer(&'a str),
}

/// The elements of the chat markup in `index.html`, found once at start-up.
pub struct Elements {
    pub document: Document,
    status: HtmlElement,
    count: HtmlElement,
    pub invite_button: HtmlButtonElement,
    pub invite: HtmlElement,
    pub room_link: HtmlInputElement,
    pub copy_link: HtmlButtonElement,
    pub copy_result: HtmlElement,
    pub qr: HtmlElement,
    pub passphrase_note: HtmlElement,
    pub new_room: HtmlButtonElement,
    pub new_passphrase_room: HtmlButtonElement,
    pub insecure_warning: HtmlElement,
    pub link_error: HtmlElement,
    link_error_reason: HtmlElement,
    pub link_error_new_room: HtmlButtonElement,
    pub unlock: HtmlFormElement,
    pub unlock_passphrase: HtmlInputElement,
    pub unlock_error: HtmlElement,
    pub messages: HtmlElement,
    announcer: HtmlElement,
    pub drop_overlay: HtmlElement,
    pub form: HtmlFormElement,
    pub nick: HtmlInputElement,
    pub attach: HtmlInputElement,
    pub text: HtmlTextAreaElement,
    pub passphrase_dialog: HtmlDialogElement,
    pub passphrase_form: HtmlFormElement,
    pub new_passphrase: HtmlInputElement,
    pub new_passphrase_repeat: HtmlInputElement,
    pub passphrase_error: HtmlElement,
    pub passphrase_cancel: HtmlButtonElement,
}

impl Elements {
    /// Finds the chat's elements; `Ok(None)` when the page has no `#chat` element at all.
    pub fn find(window: &Window) -> Result<Option<Self>, JsValue> {
        let Some(document) = window.document() else {
            return Ok(None);
        };
        if document.get_element_by_id("chat").is_none() {
            return Ok(None);
        }
        let d = &document;
        Ok(Some(Self {
            status: by_id(d, "status")?,
            count: by_id(d, "count")?,
            invite_button: by_id(d, "invite-button")?,
            invite: by_id(d, "invite")?,
            room_link: by_id(d, "room-link")?,
            copy_link: by_id(d, "copy-link")?,
            copy_result: by_id(d, "copy-result")?,
            qr: by_id(d, "qr")?,
            passphrase_note: by_id(d, "passphrase-note")?,
            new_room: by_id(d, "new-room")?,
            new_passphrase_room: by_id(d, "new-passphrase-room")?,
            insecure_warning: by_id(d, "insecure-warning")?,
            link_error: by_id(d, "link-error")?,
            link_error_reason: by_id(d, "link-error-reason")?,
            link_error_new_room: by_id(d, "link-error-new-room")?,
            unlock: by_id(d, "unlock")?,
            unlock_passphrase: by_id(d, "unlock-passphrase")?,
            unlock_error: by_id(d, "unlock-error")?,
            messages: by_id(d, "messages")?,
            announcer: by_id(d, "announcer")?,
            drop_overlay: by_id(d, "drop-overlay")?,
            form: by_id(d, "composer")?,
            nick: by_id(d, "nick")?,
            attach: by_id(d, "attach")?,
            text: by_id(d, "text")?,
            passphrase_dialog: by_id(d, "passphrase-dialog")?,
            passphrase_form: by_id(d, "passphrase-form")?,
            new_passphrase: by_id(d, "new-passphrase")?,
            new_passphrase_repeat: by_id(d, "new-passphrase-repeat")?,
            passphrase_error: by_id(d, "passphrase-error")?,
            passphrase_cancel: by_id(d, "passphrase-cancel")?,
            document,
        }))
    }

    pub fn set_status(&self, status: Status) {
        self.status.set_text_content(Some(status.label()));
        self.status
            .set_class_name(&format!("status {}", status.class()));
    }

    /// Shows the subscriber count, or nothing while it is not known.
    pub fn set_count(&self, count: Option<u32>) {
        let text = match count {
            Some(1) => "1 here".to_owned(),
            Some(count) => format!("{count} here"),
            None => String::new(),
        };
        self.count.set_text_content(Some(&text));
    }

    /// Writes `text` to the polite live region. Clearing it first makes screen readers read
    /// a repeated text again.
    pub fn announce(&self, text: &str) {
        self.announcer.set_text_content(None);
        self.announcer.set_text_content(Some(text));
    }

    /// Appends a short notice from the page itself and returns its row.
    pub fn show_notice(&self, text: &str) -> Option<Element> {
        self.show_notice_pieces(&[Piece::Page(text)])
    }

    /// Appends a notice made of `pieces`, such as a sentence around a file name, and returns
    /// its row.
    pub fn show_notice_pieces(&self, pieces: &[Piece]) -> Option<Element> {
        let row = self.create("li", "notice").ok()?;
        self.append_pieces(&row, pieces).ok()?;
        self.push(&row);
        Some(row)
    }

    /// Creates a notice row without adding it to the list.
    pub fn notice_row(&self, text: &str) -> Option<Element> {
        let row = self.create("li", "notice").ok()?;
        row.set_text_content(Some(text));
        Some(row)
    }

    /// Shows why the address names no room, with a button that starts a new one, and stops
    /// the page from connecting or sending. `reason` is the link parser's error.
    pub fn show_invalid_link(&self, reason: &str) {
        self.link_error_reason
            .set_text_content(Some(&format!("{}.", capitalize(reason))));
        self.link_error.set_hidden(false);
        self.unlock.set_hidden(true);
        self.invite.set_hidden(true);
        self.invite_button.set_hidden(true);
        let _ = self.invite_button.set_attribute("aria-expanded", "false");
        self.set_status(Status::InvalidLink);
        self.set_count(None);
        self.set_composer_enabled(false);
    }

    /// Hides what [`Elements::show_invalid_link`] showed, when the page enters a room.
    pub fn hide_invalid_link(&self) {
        self.link_error.set_hidden(true);
        self.invite_button.set_hidden(false);
    }

    /// Shows or hides the message form; it is hidden while the room is locked.
    pub fn set_composer_enabled(&self, enabled: bool) {
        self.form.set_hidden(!enabled);
    }

    /// Creates an element with a class.
    pub fn create(&self, tag: &str, class: &str) -> Result<Element, JsValue> {
        let element = self.document.create_element(tag)?;
        if !class.is_empty() {
            element.set_class_name(class);
        }
        Ok(element)
    }

    /// Appends a child element that shows `text` as text.
    pub fn append_text(
        &self,
        parent: &Element,
        tag: &str,
        class: &str,
        text: &str,
    ) -> Result<Element, JsValue> {
        let child = self.create(tag, class)?;
        child.set_text_content(Some(text));
        parent.append_child(&child)?;
        Ok(child)
    }

    /// Appends a child element that shows a room member's `text`, isolated with `dir="auto"`:
    /// its own direction comes from its first strong character, and nothing in it reorders
    /// the text around it.
    pub fn append_peer_text(
        &self,
        parent: &Element,
        tag: &str,
        class: &str,
        text: &str,
    ) -> Result<Element, JsValue> {
        let child = self.append_text(parent, tag, class, text)?;
        child.set_attribute("dir", "auto")?;
        Ok(child)
    }

    /// Appends a child element that shows `pieces` in order, each [`Piece::Peer`] in its own
    /// `<bdi>`.
    pub fn append_line(
        &self,
        parent: &Element,
        tag: &str,
        class: &str,
        pieces: &[Piece],
    ) -> Result<Element, JsValue> {
        let child = self.create(tag, class)?;
        self.append_pieces(&child, pieces)?;
        parent.append_child(&child)?;
        Ok(child)
    }

    /// Replaces the content of `element` with `pieces`.
    pub fn set_pieces(&self, element: &Element, pieces: &[Piece]) -> Result<(), JsValue> {
        element.set_text_content(None);
        self.append_pieces(element, pieces)
    }

    fn append_pieces(&self, parent: &Element, pieces: &[Piece]) -> Result<(), JsValue> {
        for piece in pieces {
            match *piece {
                Piece::Page(text) => {
                    parent.append_with_str_1(text)?;
                }
                Piece::Peer(text) => {
                    self.append_text(parent, "bdi", "", text)?;
                }
            }
        }
        Ok(())
    }

    /// Starts a message row: nick, local send time, and an empty body for the content.
    pub fn message_row(&self, nick: &str, sent_millis: u64, own: bool) -> Option<MessageRow> {
        let class = if own { "message own" } else { "message" };
        let row = self.create("li", class).ok()?;
        let header = self.create("p", "meta").ok()?;
        self.append_text(&header, "bdi", "nick", nick).ok()?;
        let time = self
            .append_text(&header, "time", "sent", &clock_time(sent_millis))
            .ok()?;
        let _ = time.set_attribute("datetime", &iso_time(sent_millis));
        let state = self.append_text(&header, "span", "state", "").ok()?;
        row.append_child(&header).ok()?;
        let body = self.create("div", "body").ok()?;
        row.append_child(&body).ok()?;
        Some(MessageRow { row, body, state })
    }

    /// Creates a row for text that arrived without our message structure, cut to
    /// [`MAX_PLAIN_CHARS`].
    pub fn plain_row(&self, text: &str) -> Option<Element> {
        let row = self.create("li", "message plain").ok()?;
        let header = self.create("p", "meta").ok()?;
        self.append_text(&header, "span", "nick", "(plain text)")
            .ok()?;
        row.append_child(&header).ok()?;
        let shown: String = text.chars().take(MAX_PLAIN_CHARS).collect();
        self.append_peer_text(&row, "p", "text", &shown).ok()?;
        if shown.len() < text.len() {
            self.append_text(
                &row,
                "p",
                "cut",
                "(the rest of this long text is not shown)",
            )
            .ok()?;
        }
        Some(row)
    }

    /// Puts a finished row in place of `placeholder`, or at the end of the list without one.
    /// The row is usually taller than its placeholder, so the list is kept at its end if it was
    /// there.
    pub fn place(&self, row: &Element, placeholder: Option<&Element>) {
        match placeholder {
            Some(placeholder) if placeholder.is_connected() => self.keep_at_end(|_| {
                let _ = placeholder.replace_with_with_node_1(row);
            }),
            _ => self.push(row),
        }
    }

    /// Creates a progress bar labelled `label`, inside `parent`.
    pub fn progress(&self, parent: &Element, label: &str) -> Option<HtmlProgressElement> {
        let progress: HtmlProgressElement = self.create("progress", "").ok()?.dyn_into().ok()?;
        let _ = progress.set_attribute("aria-label", label);
        progress.set_max(1.0);
        parent.append_child(&progress).ok()?;
        Some(progress)
    }

    /// Appends a row and keeps the list scrolled to the end if it was there already. Beyond
    /// [`MAX_ROWS`] the oldest row goes, and the `blob:` URLs it used are revoked.
    pub fn push(&self, row: &Element) {
        self.keep_at_end(|list| {
            if list.append_child(row).is_err() {
                return;
            }
            while list.child_element_count() > MAX_ROWS {
                let Some(oldest) = list.first_element_child() else {
                    break;
                };
                revoke_urls_in(&oldest);
                oldest.remove();
            }
        });
    }

    /// Runs `change` on the message list, then scrolls to the end if the list was within 80
    /// pixels of it before. Changes that make a row taller go through here.
    pub fn keep_at_end(&self, change: impl FnOnce(&Element)) {
        let list = &self.messages;
        let at_end = list.scroll_top() + list.client_height() >= list.scroll_height() - 80;
        change(list);
        if at_end {
            list.set_scroll_top(list.scroll_height());
        }
    }

    /// Removes every row, revoking the `blob:` URLs they used.
    pub fn clear_messages(&self) {
        revoke_urls_in(&self.messages);
        self.messages.set_text_content(None);
    }
}

/// A message row under construction or update.
#[derive(Clone)]
pub struct MessageRow {
    pub row: Element,
    /// The container of the content.
    pub body: Element,
    /// A short state next to the time: "sending", "not sent", and so on.
    pub state: Element,
}

impl MessageRow {
    /// Sets the state text and marks the row as pending while it is not empty.
    pub fn set_state(&self, text: &str) {
        self.state.set_text_content(Some(text));
        let classes = self.row.class_list();
        let _ = classes.toggle_with_force("pending", !text.is_empty());
        let _ = classes.remove_1("failed");
    }

    /// Marks the row as given up, with `state` saying that it stopped and why.
    pub fn set_failed(&self, state: &str) {
        self.state.set_text_content(Some(state));
        let classes = self.row.class_list();
        let _ = classes.remove_1("pending");
        let _ = classes.add_1("failed");
    }
}

/// Attribute that marks an element using a `blob:` URL, which must be revoked with it.
pub const OBJECT_URL_ATTRIBUTE: &str = "data-object-url";

/// Revokes the `blob:` URLs used by `root` and the elements inside it.
pub fn revoke_urls_in(root: &Element) {
    let mut elements = Vec::new();
    if root.has_attribute(OBJECT_URL_ATTRIBUTE) {
        elements.push(root.clone());
    }
    if let Ok(list) = root.query_selector_all(&format!("[{OBJECT_URL_ATTRIBUTE}]")) {
        for i in 0..list.length() {
            if let Some(element) = list.item(i).and_then(|n| n.dyn_into::<Element>().ok()) {
                elements.push(element);
            }
        }
    }
    for element in elements {
        if let Some(url) = element.get_attribute(OBJECT_URL_ATTRIBUTE) {
            let _ = web_sys::Url::revoke_object_url(&url);
            let _ = element.remove_attribute(OBJECT_URL_ATTRIBUTE);
        }
    }
}

fn by_id<T: JsCast>(document: &Document, id: &str) -> Result<T, JsValue> {
    document
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("the page has no #{id} element")))?
        .dyn_into::<T>()
        .map_err(|_| JsValue::from_str(&format!("#{id} is not the expected kind of element")))
}

/// Returns `text` with its first letter in upper case, to start a sentence.
fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Formats a send time as the reader's local `HH:MM`.
fn clock_time(millis: u64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(millis as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}

fn iso_time(millis: u64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(millis as f64));
    date.to_iso_string().as_string().unwrap_or_default()
}
