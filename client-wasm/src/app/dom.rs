//! The page's elements, and the rows the page adds to the message list.
//!
//! Everything a room member sent is inserted with `textContent`, so markup in a message shows
//! as text and never becomes part of the page.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    Document, Element, HtmlElement, HtmlFormElement, HtmlInputElement, HtmlTextAreaElement, Window,
};

/// The state shown by the connection indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Reconnecting,
    Offline,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Offline => "offline",
        }
    }
}

/// The elements of the chat markup in `index.html`, found once at start-up.
pub struct Elements {
    document: Document,
    status: HtmlElement,
    count: HtmlElement,
    messages: HtmlElement,
    pub form: HtmlFormElement,
    pub nick: HtmlInputElement,
    pub text: HtmlTextAreaElement,
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
        Ok(Some(Self {
            status: by_id(&document, "status")?,
            count: by_id(&document, "count")?,
            messages: by_id(&document, "messages")?,
            form: by_id(&document, "composer")?,
            nick: by_id(&document, "nick")?,
            text: by_id(&document, "text")?,
            document,
        }))
    }

    pub fn set_status(&self, status: Status) {
        self.status.set_text_content(Some(status.label()));
        self.status
            .set_class_name(&format!("status {}", status.label()));
    }

    pub fn set_count(&self, count: u32) {
        let text = if count == 1 {
            "1 here".to_owned()
        } else {
            format!("{count} here")
        };
        self.count.set_text_content(Some(&text));
    }

    /// Appends a chat message: nick, local send time and text.
    pub fn show_message(&self, nick: &str, sent_millis: u64, text: &str) {
        let Ok(row) = self.row("message") else { return };
        let _ = self.append_child_text(&row, "span", "nick", nick);
        let _ = self.append_child_text(&row, "time", "sent", &clock_time(sent_millis));
        let _ = self.append_child_text(&row, "p", "text", text);
        self.push(&row);
    }

    /// Appends text that arrived without our message structure.
    pub fn show_plain(&self, text: &str) {
        let Ok(row) = self.row("message plain") else {
            return;
        };
        let _ = self.append_child_text(&row, "p", "text", text);
        self.push(&row);
    }

    /// Appends a short notice from the page itself.
    pub fn show_notice(&self, text: &str) {
        let Ok(row) = self.row("notice") else { return };
        row.set_text_content(Some(text));
        self.push(&row);
    }

    /// Shows an error that stops the page, such as an invalid room link, and disables sending.
    pub fn show_fatal(&self, text: &str) {
        self.show_notice(text);
        self.set_status(Status::Offline);
        let _ = self.form.set_attribute("hidden", "");
    }

    fn row(&self, class: &str) -> Result<Element, JsValue> {
        let row = self.document.create_element("li")?;
        row.set_class_name(class);
        Ok(row)
    }

    fn append_child_text(
        &self,
        parent: &Element,
        tag: &str,
        class: &str,
        text: &str,
    ) -> Result<(), JsValue> {
        let child = self.document.create_element(tag)?;
        child.set_class_name(class);
        child.set_text_content(Some(text));
        parent.append_child(&child)?;
        Ok(())
    }

    /// Appends a row and keeps the list scrolled to the end if it was there already.
    fn push(&self, row: &Element) {
        let list = &self.messages;
        let at_end = list.scroll_top() + list.client_height() >= list.scroll_height() - 40;
        if list.append_child(row).is_ok() && at_end {
            list.set_scroll_top(list.scroll_height());
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

/// Formats a send time as the reader's local `HH:MM`.
fn clock_time(millis: u64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(millis as f64));
    format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
}
