//! The subscription to the room's channel: an EventSource on `/sub/<channel>`.
//!
//! On any error the page closes the EventSource and opens a new one after a backoff delay
//! (1 s doubling to 30 s, see [`retry_delay_millis`]), passing the id of the last event it
//! received as `lastEventId`, so the relay sends what the page missed or a `reset` event when it cannot.
//! The browser's own reconnection would retry every 2 s forever and, after an HTTP error,
//! not at all. The indicator shows connected, reconnecting, or offline: the browser reports no
//! network, or three attempts in a row failed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{EventSource, MessageEvent};

use super::dom::Status;
use super::timer::{jitter, sleep};
use super::{Room, outbox, receive};
use crate::pacing::retry_delay_millis;

/// Failed attempts in a row after which the indicator shows offline instead of reconnecting.
const OFFLINE_AFTER_FAILURES: u32 = 3;

/// Maximum event id length kept for resuming. The relay's ids have at most 37 characters.
const MAX_EVENT_ID_CHARS: usize = 64;

/// An event handler installed on the EventSource.
type Handler = Closure<dyn FnMut(JsValue)>;

/// The connection state of one room.
#[derive(Default)]
pub struct Connection {
    source: RefCell<Option<EventSource>>,
    /// The handlers of the current EventSource. Replacing the source drops the old ones.
    handlers: RefCell<Vec<Handler>>,
    last_event_id: RefCell<Option<String>>,
    /// Failed attempts since the last successful open.
    failures: Cell<u32>,
    connected: Cell<bool>,
    /// Counter of opens and scheduled reopens, so a reopen scheduled earlier can detect that
    /// it is stale.
    generation: Cell<u32>,
}

impl Connection {
    pub fn is_connected(&self) -> bool {
        self.connected.get()
    }
}

/// Opens the room's event stream.
pub fn connect(room: &Rc<Room>) {
    room.elements.set_status(Status::Connecting);
    open(room);
}

/// Closes the event stream for good, when the page leaves the room.
pub fn disconnect(room: &Room) {
    let connection = &room.connection;
    connection.generation.set(connection.generation.get() + 1);
    connection.connected.set(false);
    if let Some(source) = connection.source.borrow_mut().take() {
        source.close();
    }
    // No handler runs after close(), so dropping them here cannot drop a running one.
    connection.handlers.borrow_mut().clear();
}

/// Reconnects at once when the browser reports that the network is back.
pub fn network_returned(room: &Rc<Room>) {
    if room.closed.get() || room.connection.is_connected() || room.secret().is_none() {
        return;
    }
    room.connection.failures.set(0);
    room.elements.set_status(Status::Reconnecting);
    open(room);
}

/// Shows the page as offline when the browser reports that the network is gone.
pub fn network_lost(room: &Rc<Room>) {
    if room.secret().is_some() {
        room.elements.set_status(Status::Offline);
    }
}

fn open(room: &Rc<Room>) {
    if room.closed.get() {
        return;
    }
    let connection = &room.connection;
    connection.generation.set(connection.generation.get() + 1);
    if let Some(old) = connection.source.borrow_mut().take() {
        old.close();
    }

    let mut url = format!("/sub/{}", room.channel);
    if let Some(id) = connection.last_event_id.borrow().as_deref() {
        let encoded = String::from(js_sys::encode_uri_component(id));
        url.push_str(&format!("?lastEventId={encoded}"));
    }
    let source = match EventSource::new(&url) {
        Ok(source) => source,
        Err(e) => {
            room.elements.show_notice(&format!(
                "Cannot open the connection: {}.",
                super::describe(&e)
            ));
            return schedule_reopen(room);
        }
    };

    let handlers = vec![
        handle(&source, "open", room, |room, _| opened(room)),
        handle(&source, "error", room, |room, _| failed(room)),
        handle(&source, "message", room, |room, event| {
            let Ok(event) = event.dyn_into::<MessageEvent>() else {
                return;
            };
            remember_event_id(room, &event.last_event_id());
            if let Some(data) = event.data().as_string() {
                receive::receive(room, data);
            }
        }),
        handle(&source, "count", room, |room, event| {
            let count = event
                .dyn_into::<MessageEvent>()
                .ok()
                .and_then(|event| event.data().as_string())
                .and_then(|data| data.strip_prefix("count=")?.parse::<u32>().ok());
            if count.is_some() {
                room.elements.set_count(count);
            }
        }),
        handle(&source, "reset", room, |room, event| {
            let data = event
                .dyn_into::<MessageEvent>()
                .ok()
                .and_then(|event| event.data().as_string())
                .unwrap_or_default();
            room.elements.show_notice(reset_notice(&data));
        }),
    ];
    *connection.handlers.borrow_mut() = handlers;
    *connection.source.borrow_mut() = Some(source);
}

/// Installs one handler on `source` that runs `on_event` with the room.
fn handle(
    source: &EventSource,
    event: &str,
    room: &Rc<Room>,
    on_event: impl Fn(&Rc<Room>, JsValue) + 'static,
) -> Handler {
    // A weak reference, so a handler never keeps a room alive that the page has left.
    let room = Rc::downgrade(room);
    let closure = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        if let Some(room) = room.upgrade().filter(|room| !room.closed.get()) {
            on_event(&room, event);
        }
    });
    let _ = source.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
    closure
}

fn opened(room: &Rc<Room>) {
    let connection = &room.connection;
    connection.connected.set(true);
    connection.failures.set(0);
    room.elements.set_status(Status::Connected);
    outbox::flush(room);
}

fn failed(room: &Rc<Room>) {
    let connection = &room.connection;
    connection.connected.set(false);
    connection.failures.set(connection.failures.get() + 1);
    if let Some(source) = connection.source.borrow().as_ref() {
        source.close();
    }
    room.elements.set_count(None);

    let online = room.window.navigator().on_line();
    let status = if !online || connection.failures.get() >= OFFLINE_AFTER_FAILURES {
        Status::Offline
    } else {
        Status::Reconnecting
    };
    room.elements.set_status(status);
    schedule_reopen(room);
}

fn schedule_reopen(room: &Rc<Room>) {
    let connection = &room.connection;
    let generation = connection.generation.get() + 1;
    connection.generation.set(generation);
    let attempt = connection.failures.get().saturating_sub(1);
    let delay = retry_delay_millis(attempt, jitter());

    let room = Rc::downgrade(room);
    wasm_bindgen_futures::spawn_local(async move {
        sleep(delay).await;
        let Some(room) = room.upgrade() else {
            return;
        };
        if !room.closed.get() && room.connection.generation.get() == generation {
            open(&room);
        }
    });
}

fn remember_event_id(room: &Room, id: &str) {
    // The relay sends an id with every message event; an event without one changes nothing.
    if id.is_empty() || id.len() > MAX_EVENT_ID_CHARS {
        return;
    }
    *room.connection.last_event_id.borrow_mut() = Some(id.to_owned());
}

/// Returns the notice for a `reset` event's data.
fn reset_notice(data: &str) -> &'static str {
    match data {
        "reason=too-old" => {
            "More messages were sent while this page was away than the server keeps, so some \
             of them are missing here."
        }
        _ => {
            "The server could not tell what this page missed while it was away (it may have \
             restarted), so messages sent meanwhile may be missing here."
        }
    }
}
