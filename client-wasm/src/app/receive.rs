//! Received events: decrypting them within a budget of key derivations, and showing them.
//!
//! An envelope whose (salt, iterations) key the page has cached costs one AES-CCM and is shown
//! at once. One that needs a new PBKDF2 derivation is charged to a [`DerivationBudget`] of
//! iterations and decrypted with `decryptAsync`, which derives through WebCrypto off the main
//! thread. A placeholder row keeps its place in the list meanwhile. When the budget is spent,
//! up to [`MAX_WAITING`] envelopes wait for it to refill; beyond that they are skipped, and one
//! notice, updated in place, counts them.
//!
//! Envelopes that cannot be read or decrypted also share one counting notice per burst.
//! Publishing needs only the channel id, not the key, so anyone who learns the id could
//! otherwise fill the list with notices and push every real message out of it.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use web_sys::Element;

use super::dom::MessageRow;
use super::timer::{now_millis, sleep};
use super::{Room, download};
use crate::crypto::envelope::{self, EnvelopeError};
use crate::message::{Attachment, Body, Message, MessageId, Received};
use crate::pacing::{DerivationBudget, RecentIds, Wait};

/// Envelopes that may wait for the derivation budget at once.
pub const MAX_WAITING: u32 = 8;

/// Message ids remembered for showing each message once. Far more than the relay replays on a
/// resume (its history keeps 100 events by default).
const SEEN_CAPACITY: usize = 4096;

/// How long a counting notice waits for its next event before a new one starts a new notice,
/// in ms.
const BURST_MILLIS: f64 = 30_000.0;

/// Delay that gathers arrivals into one announcement for screen readers, in ms.
const ANNOUNCE_DELAY_MILLIS: u32 = 1_500;

/// Maximum part of a message read out in an announcement, in characters.
const ANNOUNCE_CHARS: usize = 140;

/// Attachments that rows offer to download, by the number in the button's
/// `data-attachment` attribute. At most this many are kept, oldest dropped first.
const MAX_ATTACHMENTS: usize = 500;

/// The receiving state of a room: budget, seen ids, notices and attachments.
pub struct Receiver {
    budget: DerivationBudget,
    waiting: u32,
    seen: RecentIds<MessageId>,
    skipped: CountedNotice,
    failed: CountedNotice,
    announcements: Vec<String>,
    announce_scheduled: bool,
    attachments: HashMap<u32, (Attachment, MessageRow)>,
    attachment_order: VecDeque<u32>,
    next_attachment: u32,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            budget: DerivationBudget::default(),
            waiting: 0,
            seen: RecentIds::new(SEEN_CAPACITY),
            skipped: CountedNotice::default(),
            failed: CountedNotice::default(),
            announcements: Vec::new(),
            announce_scheduled: false,
            attachments: HashMap::new(),
            attachment_order: VecDeque::new(),
            next_attachment: 0,
        }
    }
}

impl Receiver {
    /// Records a message id as shown, so its echo from the relay is not shown again.
    pub fn remember(&mut self, id: &MessageId) {
        self.seen.insert(id.clone());
    }

    /// Keeps an attachment for a row's download button and returns its number.
    pub fn keep_attachment(&mut self, attachment: Attachment, row: MessageRow) -> u32 {
        let number = self.next_attachment;
        self.next_attachment = self.next_attachment.wrapping_add(1);
        if self.attachment_order.len() == MAX_ATTACHMENTS
            && let Some(oldest) = self.attachment_order.pop_front()
        {
            self.attachments.remove(&oldest);
        }
        self.attachments.insert(number, (attachment, row));
        self.attachment_order.push_back(number);
        number
    }

    pub fn attachment(&self, number: u32) -> Option<(Attachment, MessageRow)> {
        self.attachments.get(&number).cloned()
    }
}

/// A notice row that counts events of one kind while they keep coming, so that a burst of them
/// takes one row.
#[derive(Default)]
struct CountedNotice {
    count: u32,
    /// The row and the time of its last event, in ms.
    row: Option<(Element, f64)>,
}

impl CountedNotice {
    /// Counts one more event at `now`. Returns the row to update when the burst goes on, or
    /// `None` when this event starts a new burst and needs a new row.
    fn add(&mut self, now: f64) -> Option<Element> {
        let current = self
            .row
            .take()
            .filter(|(row, at)| now - at < BURST_MILLIS && row.is_connected());
        match current {
            Some((row, _)) => {
                self.count += 1;
                Some(row)
            }
            None => {
                self.count = 1;
                None
            }
        }
    }

    /// Keeps `row` as the notice that the next events of the burst update.
    fn keep(&mut self, row: Option<Element>, now: f64) {
        self.row = row.map(|row| (row, now));
    }
}

/// Decrypts one event's envelope and shows what it contains.
pub fn receive(room: &Rc<Room>, envelope_text: String) {
    let Some(secret) = room.secret() else {
        return;
    };
    let parsed = match envelope::parse(&envelope_text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let reason = envelope_problem(&e);
            count_failure(room, &format!("could not be read: {reason}"), None);
            return;
        }
    };

    if crate::api::has_cached_key(secret.expose(), &parsed.salt, parsed.iterations) {
        let result = crate::api::decrypt_text(secret.expose(), &envelope_text);
        deliver(room, result.map_err(|e| e.to_string()), None);
        return;
    }

    let iterations = parsed.iterations;
    let spend = room
        .receiver
        .borrow_mut()
        .budget
        .try_spend(now_millis(), iterations);
    let wait = match spend {
        Ok(()) => None,
        Err(Wait::Millis(millis)) if room.receiver.borrow().waiting < MAX_WAITING => Some(millis),
        Err(_) => return skip(room),
    };

    let placeholder = room.elements.notice_row("Decrypting a message…");
    if let Some(placeholder) = &placeholder {
        room.elements.push(placeholder);
    }
    if wait.is_some() {
        room.receiver.borrow_mut().waiting += 1;
    }
    let room = room.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(millis) = wait {
            wait_for_budget(&room, millis, iterations).await;
            room.receiver.borrow_mut().waiting -= 1;
        }
        if room.closed.get() {
            return;
        }
        let result = crate::api::decrypt_async(secret.expose().to_owned(), envelope_text).await;
        let result = result.map_err(|e| super::describe(&e.into()));
        deliver(&room, result, placeholder.as_ref());
    });
}

/// Sleeps until the budget has `iterations` for this envelope, then takes them.
async fn wait_for_budget(room: &Rc<Room>, first_wait: u32, iterations: u32) {
    let mut millis = first_wait;
    loop {
        sleep(millis).await;
        if room.closed.get() {
            return;
        }
        let spend = room
            .receiver
            .borrow_mut()
            .budget
            .try_spend(now_millis(), iterations);
        match spend {
            Ok(()) => return,
            Err(Wait::Millis(next)) => millis = next,
            // The cost fitted the bucket when this envelope was queued and the bucket does
            // not shrink, so this arm is not reached; waiting a second keeps it harmless.
            Err(Wait::Never) => millis = 1000,
        }
    }
}

/// Shows a decrypted plaintext, or why it could not be decrypted, in place of `placeholder`.
fn deliver(room: &Rc<Room>, result: Result<String, String>, placeholder: Option<&Element>) {
    let plaintext = match result {
        Ok(plaintext) => plaintext,
        Err(reason) => {
            // The error text starts with "cannot decrypt: ", which would repeat the notice.
            let reason = reason.strip_prefix("cannot decrypt: ").unwrap_or(&reason);
            count_failure(
                room,
                &format!("could not be decrypted: {reason}"),
                placeholder,
            );
            return;
        }
    };

    match Received::classify(plaintext) {
        Received::Message(message) => {
            let fresh = room.receiver.borrow_mut().seen.insert(message.id.clone());
            if !fresh {
                // A retried publish or a replay on resume: it is on the page already.
                if let Some(placeholder) = placeholder {
                    placeholder.remove();
                }
                return;
            }
            let Some(row) = show_message(room, &message, false) else {
                return;
            };
            room.elements.place(&row.row, placeholder);
            announce(room, summary(&message));
        }
        Received::Plain(text) => {
            let Some(row) = room.elements.plain_row(&text) else {
                return;
            };
            room.elements.place(&row, placeholder);
            announce(room, format!("Plain text: {}", cut(&text)));
        }
        Received::Invalid { reason } => {
            // Only a member with the key can send these, and such a member can fill the list
            // with real messages as well, so each gets its own notice.
            let reason = cut(&reason);
            let text = format!("A message could not be shown: {reason}.");
            if let Some(row) = room.elements.notice_row(&text) {
                room.elements.place(&row, placeholder);
            }
            announce(room, text);
        }
    }
}

/// Builds the row of a message, not yet in the list. For an image or a file the download
/// starts or is offered; `own` marks this page's messages.
pub fn show_message(room: &Rc<Room>, message: &Message, own: bool) -> Option<MessageRow> {
    let row = room
        .elements
        .message_row(&message.nick, message.sent, own)?;
    match &message.body {
        Body::Text(text) => {
            room.elements
                .append_peer_text(&row.body, "p", "text", text)
                .ok()?;
        }
        Body::Image {
            attachment,
            width,
            height,
        } => download::offer_image(room, &row, &message.nick, attachment, *width, *height),
        Body::File(attachment) => download::offer_file(room, &row, attachment),
    }
    if own {
        room.elements.push(&row.row);
    }
    Some(row)
}

/// Describes why an envelope could not be parsed. serde's account of invalid JSON (types and
/// line numbers) means nothing to the people reading the notice, so it is left out.
fn envelope_problem(error: &EnvelopeError) -> String {
    match error {
        EnvelopeError::InvalidJson { .. } => "the envelope is not valid JSON".to_owned(),
        other => other.to_string(),
    }
}

/// Shows an envelope's `problem` (such as "could not be decrypted: ..."), in place of
/// `placeholder`. Failures that follow within [`BURST_MILLIS`] of each other update one notice
/// with their count and the latest problem, and their placeholders go.
fn count_failure(room: &Rc<Room>, problem: &str, placeholder: Option<&Element>) {
    let now = now_millis();
    let current = room.receiver.borrow_mut().failed.add(now);
    let count = room.receiver.borrow().failed.count;
    let text = if count == 1 {
        format!("A message {problem}.")
    } else {
        format!("{count} messages could not be read or decrypted. The latest {problem}.")
    };
    let row = match current {
        Some(row) => {
            row.set_text_content(Some(&text));
            if let Some(placeholder) = placeholder {
                placeholder.remove();
            }
            Some(row)
        }
        None => {
            let row = room.elements.notice_row(&text);
            if let Some(row) = &row {
                room.elements.place(row, placeholder);
            }
            announce(room, text);
            row
        }
    };
    room.receiver.borrow_mut().failed.keep(row, now);
}

/// Counts an envelope skipped for the budget in one notice per burst.
fn skip(room: &Rc<Room>) {
    let now = now_millis();
    let current = room.receiver.borrow_mut().skipped.add(now);
    let count = room.receiver.borrow().skipped.count;
    let text = format!(
        "{count} message(s) skipped: they needed more new decryption keys than this page derives \
         in a short time. A member may be sending costly messages on purpose."
    );
    let row = match current {
        Some(row) => {
            row.set_text_content(Some(&text));
            Some(row)
        }
        None => {
            let row = room.elements.show_notice(&text);
            announce(room, text);
            row
        }
    };
    room.receiver.borrow_mut().skipped.keep(row, now);
}

/// Queues a short text for the screen-reader live region. Arrivals within
/// [`ANNOUNCE_DELAY_MILLIS`] are read as one summary, so a burst (such as the messages replayed
/// after a reconnect) does not flood the reader.
pub fn announce(room: &Rc<Room>, text: String) {
    let mut receiver = room.receiver.borrow_mut();
    receiver.announcements.push(text);
    if receiver.announce_scheduled {
        return;
    }
    receiver.announce_scheduled = true;
    drop(receiver);

    let room = Rc::downgrade(room);
    wasm_bindgen_futures::spawn_local(async move {
        sleep(ANNOUNCE_DELAY_MILLIS).await;
        let Some(room) = room.upgrade() else {
            return;
        };
        let pending = {
            let mut receiver = room.receiver.borrow_mut();
            receiver.announce_scheduled = false;
            std::mem::take(&mut receiver.announcements)
        };
        let text = match pending.as_slice() {
            [] => return,
            [one] => one.clone(),
            many => format!("{} new messages and notices.", many.len()),
        };
        if !room.closed.get() {
            room.elements.announce(&text);
        }
    });
}

fn summary(message: &Message) -> String {
    match &message.body {
        Body::Text(text) => format!("{}: {}", message.nick, cut(text)),
        Body::Image { .. } => format!("{} sent an image.", message.nick),
        Body::File(attachment) => {
            format!("{} sent a file: {}", message.nick, cut(&attachment.name))
        }
    }
}

fn cut(text: &str) -> String {
    let mut cut: String = text.chars().take(ANNOUNCE_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
