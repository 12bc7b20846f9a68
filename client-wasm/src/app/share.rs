//! The invite panel: the room link with a copy button and a QR code, and creating new rooms,
//! with or without a passphrase.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Element;
use zeroize::Zeroizing;

use super::{App, Room, describe, listen};
use crate::link::{MIN_PASSPHRASE_CHARS, RoomLink};
use crate::qr::qr_path;

const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

/// Installs the panel's buttons and the passphrase dialog.
pub fn wire(app: &Rc<App>) -> Result<(), JsValue> {
    let on_toggle = app.clone();
    listen(&app.elements.invite_button, "click", move |_| {
        let open = on_toggle.elements.invite.hidden();
        set_invite_open(&on_toggle, open);
    })?;

    let on_copy = app.clone();
    listen(&app.elements.copy_link, "click", move |_| {
        copy_link(&on_copy)
    })?;

    let on_new = app.clone();
    listen(&app.elements.new_room, "click", move |_| {
        start_open_room(&on_new)
    })?;
    let on_invalid_link = app.clone();
    listen(&app.elements.link_error_new_room, "click", move |_| {
        start_open_room(&on_invalid_link)
    })?;

    let on_open_dialog = app.clone();
    listen(&app.elements.new_passphrase_room, "click", move |_| {
        let elements = &on_open_dialog.elements;
        elements.passphrase_error.set_text_content(None);
        elements.new_passphrase.set_value("");
        elements.new_passphrase_repeat.set_value("");
        let _ = elements.passphrase_dialog.show_modal();
        let _ = elements.new_passphrase.focus();
    })?;

    let on_cancel = app.clone();
    listen(&app.elements.passphrase_cancel, "click", move |_| {
        on_cancel.elements.passphrase_dialog.close();
    })?;

    let on_create = app.clone();
    listen(&app.elements.passphrase_form, "submit", move |event| {
        event.prevent_default();
        create_passphrase_room(&on_create);
    })?;

    // The dialog returns focus to the button that opened it when it closes.
    let on_close = app.clone();
    listen(&app.elements.passphrase_dialog, "close", move |_| {
        on_close.elements.new_passphrase.set_value("");
        on_close.elements.new_passphrase_repeat.set_value("");
    })
}

/// Creates a room without a passphrase and joins it.
fn start_open_room(app: &Rc<App>) {
    match RoomLink::generate_open() {
        Ok(link) => {
            let secret = link.open_secret();
            go_to(app, link, secret);
        }
        Err(e) => {
            app.elements
                .show_notice(&format!("Cannot create a room: {e}."));
        }
    }
}

/// Shows the room's link and QR code in the invite panel.
pub fn show_room(app: &App, room: &Room) {
    let elements = &app.elements;
    let link = full_link(app, room);
    elements.room_link.set_value(&link);
    elements.copy_result.set_text_content(None);
    elements
        .passphrase_note
        .set_hidden(!room.link.needs_passphrase());

    elements.qr.set_text_content(None);
    match draw_qr(app, &link) {
        Ok(svg) => {
            let _ = elements.qr.append_child(&svg);
        }
        Err(reason) => elements.qr.set_text_content(Some(&reason)),
    }
}

fn set_invite_open(app: &App, open: bool) {
    let elements = &app.elements;
    elements.invite.set_hidden(!open);
    let _ = elements
        .invite_button
        .set_attribute("aria-expanded", if open { "true" } else { "false" });
    if open {
        let _ = elements.room_link.focus();
        elements.room_link.select();
    }
}

/// Returns the page's address with the room's fragment.
fn full_link(app: &App, room: &Room) -> String {
    let location = app.window.location();
    let origin = location.origin().unwrap_or_default();
    let path = location.pathname().unwrap_or_default();
    format!("{origin}{path}{}", room.link.fragment().as_str())
}

/// Draws the QR code of `link` as an SVG element.
fn draw_qr(app: &App, link: &str) -> Result<Element, String> {
    let qr = qr_path(link).map_err(|e| e.to_string())?;
    let document = &app.elements.document;
    let create = |tag: &str| {
        document
            .create_element_ns(Some(SVG_NAMESPACE), tag)
            .map_err(|e| describe(&e))
    };
    let svg = create("svg")?;
    let size = qr.size.to_string();
    let attributes = [
        ("viewBox", format!("0 0 {size} {size}")),
        ("role", "img".to_owned()),
        ("aria-label", "QR code of the room link".to_owned()),
        ("shape-rendering", "crispEdges".to_owned()),
    ];
    for (name, value) in attributes {
        svg.set_attribute(name, &value).map_err(|e| describe(&e))?;
    }

    // A light square under the modules, so the code reads in a dark color scheme too.
    let background = create("rect")?;
    for (name, value) in [("width", &size), ("height", &size)] {
        background
            .set_attribute(name, value)
            .map_err(|e| describe(&e))?;
    }
    background
        .set_attribute("fill", "#ffffff")
        .map_err(|e| describe(&e))?;
    let modules = create("path")?;
    modules
        .set_attribute("d", &qr.path)
        .map_err(|e| describe(&e))?;
    modules
        .set_attribute("fill", "#000000")
        .map_err(|e| describe(&e))?;
    svg.append_child(&background).map_err(|e| describe(&e))?;
    svg.append_child(&modules).map_err(|e| describe(&e))?;
    Ok(svg)
}

/// Copies the link with the Clipboard API. Where that is missing or refused (plain HTTP, an
/// old browser), the page selects the link and shows how to copy it.
fn copy_link(app: &Rc<App>) {
    let elements = &app.elements;
    let link = elements.room_link.value();
    let clipboard = app.window.navigator().clipboard();
    let has_clipboard = !JsValue::from(clipboard.clone()).is_undefined();

    let app = app.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let elements = &app.elements;
        let copied = has_clipboard && JsFuture::from(clipboard.write_text(&link)).await.is_ok();
        if copied {
            elements.copy_result.set_text_content(Some("Link copied."));
            return;
        }
        let _ = elements.room_link.focus();
        elements.room_link.select();
        elements.copy_result.set_text_content(Some(
            "The browser did not allow copying. The link is selected: press Ctrl+C (⌘C on a Mac) to copy it.",
        ));
    });
}

/// Creates a passphrase room from the dialog's fields and joins it.
fn create_passphrase_room(app: &Rc<App>) {
    let elements = &app.elements;
    let passphrase = Zeroizing::new(elements.new_passphrase.value());
    let repeat = Zeroizing::new(elements.new_passphrase_repeat.value());
    let error = |text: &str| {
        elements.passphrase_error.set_text_content(Some(text));
    };
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        error(&format!(
            "Use at least {MIN_PASSPHRASE_CHARS} characters; several words are better."
        ));
        let _ = elements.new_passphrase.focus();
        return;
    }
    if *passphrase != *repeat {
        error("The two passphrases differ.");
        let _ = elements.new_passphrase_repeat.focus();
        return;
    }

    match RoomLink::generate_with_passphrase(&passphrase) {
        Ok((link, secret)) => {
            elements.passphrase_dialog.close();
            go_to(app, link, Some(secret));
            set_invite_open(app, true);
        }
        Err(e) => error(&format!("Cannot create the room: {e}.")),
    }
}

/// Puts a new room's link in the address bar, as a new history entry, and joins it.
fn go_to(app: &Rc<App>, link: RoomLink, secret: Option<crate::link::RoomSecret>) {
    let pushed = app.window.history().and_then(|history| {
        history.push_state_with_url(&JsValue::NULL, "", Some(&link.fragment()))
    });
    if let Err(e) = pushed {
        app.elements
            .show_notice(&format!("Cannot change the address: {}.", describe(&e)));
    }
    app.enter(link, secret);
}
