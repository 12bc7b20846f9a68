//! Messages waiting to be published, sent one at a time in the order they were written.
//!
//! A message stays queued, shown as pending, while the event stream is down, and goes out when
//! it returns: nothing typed is lost to a dropped connection. A publish that fails while
//! connected is retried after a backoff delay (or the relay's `Retry-After`), at most
//! [`MAX_ATTEMPTS`] times; then the row says why and offers to send it again. Each retry sends
//! the same envelope with the same message id, so a publish whose response was lost but that
//! reached the relay is shown once by every receiver.
//!
//! A publish counts as delivered only when the relay queued it for at least one subscriber.
//! The page's own subscription is one, so `queued: 0` means the relay does not know this page
//! yet (it restarted, say), and the message waits for the next connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, Response};

use super::dom::MessageRow;
use super::timer::{jitter, sleep};
use super::{Room, describe};
use crate::message::Message;
use crate::pacing::retry_delay_millis;

/// Publishes tried while connected before a message is given up, with the backoff delays of
/// [`retry_delay_millis`] between them: about a minute in all.
pub const MAX_ATTEMPTS: u32 = 6;

/// Longest `Retry-After` the page honours, in seconds; longer values are cut to this.
const MAX_RETRY_AFTER_SECONDS: u32 = 120;

/// Messages the outbox holds: queued, and failed ones that can be sent again.
#[derive(Default)]
pub struct Outbox {
    queue: RefCell<VecDeque<Pending>>,
    /// Set while a task is sending the queue, so only one does.
    busy: Cell<bool>,
    failed: RefCell<Vec<Pending>>,
    next_failed: Cell<u32>,
}

struct Pending {
    message: Message,
    /// The envelope, once encrypted; every retry sends these same bytes.
    envelope: Option<String>,
    row: MessageRow,
    attempts: u32,
}

/// The kind of a failed publish.
enum Failure {
    /// Worth retrying: the relay could not be reached, was busy, or rate-limited the page.
    Retry {
        reason: String,
        after_millis: Option<u32>,
    },
    /// Retrying would fail the same way, such as a message over the relay's size limit.
    Reject { reason: String },
}

/// Queues a message whose row is already on the page, and sends it when connected.
pub fn enqueue(room: &Rc<Room>, message: Message, row: MessageRow) {
    row.set_state(if room.connection.is_connected() {
        "sending…"
    } else {
        "waiting for the connection"
    });
    room.outbox.queue.borrow_mut().push_back(Pending {
        message,
        envelope: None,
        row,
        attempts: 0,
    });
    flush(room);
}

/// Starts sending the queue, unless a send is running or the page is not connected.
pub fn flush(room: &Rc<Room>) {
    let outbox = &room.outbox;
    if outbox.busy.get() || !room.connection.is_connected() || outbox.queue.borrow().is_empty() {
        return;
    }
    outbox.busy.set(true);
    let room = room.clone();
    wasm_bindgen_futures::spawn_local(async move {
        send_queue(&room).await;
        room.outbox.busy.set(false);
    });
}

/// Puts a failed message, by the number on its "Send again" button, back in the queue.
pub fn resend(room: &Rc<Room>, number: u32) {
    let pending = {
        let mut failed = room.outbox.failed.borrow_mut();
        let index = failed.iter().position(|p| {
            p.row.row.get_attribute("data-resend-number") == Some(number.to_string())
        });
        index.map(|index| failed.remove(index))
    };
    let Some(mut pending) = pending else {
        return;
    };
    if let Ok(Some(button)) = pending.row.row.query_selector("button[data-resend]") {
        button.remove();
    }
    pending.attempts = 0;
    pending.row.set_state("sending…");
    room.outbox.queue.borrow_mut().push_back(pending);
    flush(room);
}

async fn send_queue(room: &Rc<Room>) {
    loop {
        if room.closed.get() || room.outbox.queue.borrow().is_empty() {
            return;
        }
        if !room.connection.is_connected() {
            for pending in room.outbox.queue.borrow().iter() {
                pending.row.set_state("waiting for the connection");
            }
            return;
        }
        let Some(envelope) = front_envelope(room).await else {
            continue;
        };

        let result = match publish(room, &envelope).await {
            Ok(0) => Err(Failure::Retry {
                reason: "the server has not registered this page's connection yet".to_owned(),
                after_millis: None,
            }),
            other => other,
        };
        match result {
            Ok(_) => {
                if let Some(sent) = room.outbox.queue.borrow_mut().pop_front() {
                    sent.row.set_state("");
                }
            }
            Err(Failure::Reject { reason }) => give_up(room, &reason),
            Err(Failure::Retry {
                reason,
                after_millis,
            }) => {
                if !room.connection.is_connected() {
                    // The stream's reconnection flushes the queue again; this try is not
                    // counted against the message.
                    continue;
                }
                let attempts = {
                    let mut queue = room.outbox.queue.borrow_mut();
                    let Some(front) = queue.front_mut() else {
                        return;
                    };
                    front.attempts += 1;
                    front.attempts
                };
                if attempts >= MAX_ATTEMPTS {
                    give_up(room, &stopped_after(attempts, &reason));
                    continue;
                }
                let delay =
                    after_millis.unwrap_or_else(|| retry_delay_millis(attempts - 1, jitter()));
                set_front_state(room, &retrying_in(&reason, delay));
                return schedule_flush(room, delay);
            }
        }
    }
}

/// Returns the envelope of the first queued message, encrypting it on first use. A message
/// that cannot be encrypted is given up and `None` returned.
async fn front_envelope(room: &Rc<Room>) -> Option<String> {
    let (json, envelope) = {
        let queue = room.outbox.queue.borrow();
        let front = queue.front()?;
        (front.message.to_json(), front.envelope.clone())
    };
    if let Some(envelope) = envelope {
        return Some(envelope);
    }

    let Some(secret) = room.secret() else {
        give_up(room, "the room is locked");
        return None;
    };
    match crate::api::encrypt_async(secret.expose().to_owned(), json).await {
        Ok(envelope) => {
            if let Some(front) = room.outbox.queue.borrow_mut().front_mut() {
                front.envelope = Some(envelope.clone());
            }
            Some(envelope)
        }
        Err(e) => {
            give_up(room, &format!("encryption failed: {}", describe(&e.into())));
            None
        }
    }
}

fn set_front_state(room: &Room, text: &str) {
    if let Some(front) = room.outbox.queue.borrow().front() {
        front.row.set_state(text);
    }
}

/// Moves the first message to the failed list, with the reason and a "Send again" button.
fn give_up(room: &Rc<Room>, reason: &str) {
    let Some(pending) = room.outbox.queue.borrow_mut().pop_front() else {
        return;
    };
    pending.row.set_failed(&format!("not sent: {reason}"));
    let number = room.outbox.next_failed.get();
    room.outbox.next_failed.set(number.wrapping_add(1));
    let _ = pending
        .row
        .row
        .set_attribute("data-resend-number", &number.to_string());
    if let Ok(button) = room.elements.create("button", "resend") {
        let _ = button.set_attribute("type", "button");
        let _ = button.set_attribute("data-resend", &number.to_string());
        button.set_text_content(Some("Send again"));
        let _ = pending.row.row.append_child(&button);
    }
    room.outbox.failed.borrow_mut().push(pending);
}

fn schedule_flush(room: &Rc<Room>, delay: u32) {
    let room = Rc::downgrade(room);
    wasm_bindgen_futures::spawn_local(async move {
        sleep(delay).await;
        if let Some(room) = room.upgrade().filter(|room| !room.closed.get()) {
            flush(&room);
        }
    });
}

/// Posts an envelope to the room's channel and returns how many subscribers it was queued for.
async fn publish(room: &Room, envelope: &str) -> Result<u32, Failure> {
    let request = publish_request(&room.channel, envelope).map_err(|e| Failure::Reject {
        reason: describe(&e),
    })?;
    let response = match JsFuture::from(room.window.fetch_with_request(&request)).await {
        Ok(response) => response.unchecked_into::<Response>(),
        Err(_) => {
            return Err(Failure::Retry {
                reason: "the server could not be reached".to_owned(),
                after_millis: None,
            });
        }
    };

    let status = response.status();
    let body = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|text| text.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    if status == 202 {
        return Ok(queued_count(&body));
    }

    let reason = refusal(status, &body);
    if status == 429 || status >= 500 {
        let after_millis = response
            .headers()
            .get("Retry-After")
            .ok()
            .flatten()
            .and_then(|value| value.trim().parse::<u32>().ok())
            .map(|seconds| seconds.min(MAX_RETRY_AFTER_SECONDS) * 1000);
        return Err(Failure::Retry {
            reason,
            after_millis,
        });
    }
    Err(Failure::Reject { reason })
}

fn publish_request(channel: &str, envelope: &str) -> Result<Request, JsValue> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(envelope));
    let headers = Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    init.set_headers(&headers);
    Request::new_with_str_and_init(&format!("/pub/{channel}"), &init)
}

/// Reads `queued` from the relay's `{"id":…,"queued":N}`; a body without it counts as 1,
/// since the relay accepted the event.
fn queued_count(body: &str) -> u32 {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("queued")?.as_u64())
        .map_or(1, |queued| queued.min(u32::MAX.into()) as u32)
}

/// Describes the relay's error response for a row's state. The text of a 429 or 503 response
/// gives retry advice that only the page can act on, so those two are named by status alone.
pub fn refusal(status: u16, body: &str) -> String {
    match status {
        429 => "the server limits how often this page sends (429 Too Many Requests)".to_owned(),
        503 => "the server is busy (503 Service Unavailable)".to_owned(),
        status => match short(body).as_str() {
            "" => format!("the server answered {status}"),
            text => format!("the server answered {status}: {text}"),
        },
    }
}

/// Formats the state of a row while its message waits `delay_millis` for the next try.
pub fn retrying_in(reason: &str, delay_millis: u32) -> String {
    format!(
        "not sent yet: {reason}; trying again in {} s",
        delay_millis.div_ceil(1000)
    )
}

/// Formats the reason of a message or file given up after `attempts` failed tries, the last one
/// for `reason`.
pub fn stopped_after(attempts: u32, reason: &str) -> String {
    format!("stopped after {attempts} tries, the last because {reason}")
}

/// Cuts a server's error text to one short line.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let mut cut: String = line.chars().take(160).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn given_up_row_says_it_stopped() {
        let body = "too many publish requests from this client; retry in 1 s\n";
        let reason = refusal(429, body);
        let state = format!("not sent: {}", stopped_after(MAX_ATTEMPTS, &reason));
        assert_eq!(
            state,
            "not sent: stopped after 6 tries, the last because the server limits how often \
             this page sends (429 Too Many Requests)"
        );
        assert!(!state.contains("retry"), "{state}");
    }

    #[test]
    fn retry_state_names_own_delay() {
        let reason = refusal(
            503,
            "the relay is serving its maximum of 10 event streams; retry later",
        );
        assert_eq!(
            retrying_in(&reason, 1500),
            "not sent yet: the server is busy (503 Service Unavailable); trying again in 2 s"
        );
    }

    #[test]
    fn other_refusals_keep_server_text() {
        let body = "the envelope of 5000 bytes exceeds the limit of 4096 bytes\nmore";
        assert_eq!(
            refusal(413, body),
            "the server answered 413: the envelope of 5000 bytes exceeds the limit of 4096 bytes"
        );
        assert_eq!(refusal(500, " \n"), "the server answered 500");
    }
}
