//! One pass over an envelope in its usual form: field names without escapes, each name once, and
//! values that are strings without escapes, integers or booleans. Every envelope that
//! `sjcl.encrypt` writes has that form, and checking it this way skips the map, the second parse
//! of each string and the re-encoding of each name that the general check spends.
//!
//! The pass accepts only bodies that the general check in the parent module accepts, and writes
//! the same compact text. For any other body, valid or not, it returns `None`, and the general
//! check decides and words the error. The property tests below hold it to that.

use std::array;

use bytes::Bytes;

use super::{
    INTEGER_FIELDS, MAX_FIELDS, MAX_SHORT_VALUE, NAME_FIELDS, OPTIONAL_BASE64_FIELDS,
    REQUIRED_BASE64_FIELDS, is_base64,
};

/// Checks and compacts `body` as [`super::check_and_compact`] does, if it has the usual form.
pub(super) fn compact(body: &[u8]) -> Option<Bytes> {
    let mut fields = [Field::EMPTY; MAX_FIELDS];
    let count = read_object(body, &mut fields)?;
    let fields = &fields[..count];

    // Sorted by key, with each field's index in the low byte. Two fields with one key are a
    // repeated name, which the general check resolves by keeping the last value, or two long
    // names that share their first eight bytes. Either way the general check takes the body.
    let mut order: [u128; MAX_FIELDS] = array::from_fn(|index| {
        let key = fields.get(index).map_or(u64::MAX, |field| field.key);
        (u128::from(key) << 8) | index as u128
    });
    let order = &mut order[..count];
    order.sort_unstable();
    if order.windows(2).any(|pair| pair[0] >> 8 == pair[1] >> 8) {
        return None;
    }

    // Base64 last: a body that the general check must take is then found before its largest
    // values are decoded, so that they are decoded once, not twice.
    let mut required = 0;
    for field in fields {
        match field.rule() {
            Rule::RequiredBase64 => required += 1,
            Rule::Base64 => {}
            rule => {
                if !field.is_valid(rule) {
                    return None;
                }
            }
        }
    }
    if required < REQUIRED_BASE64_FIELDS.len() {
        return None;
    }
    let base64_valid = fields.iter().all(|field| match field.rule() {
        rule @ (Rule::RequiredBase64 | Rule::Base64) => field.is_valid(rule),
        _ => true,
    });
    if !base64_valid {
        return None;
    }

    // Dropping whitespace is all the compact form changes, so it is never longer than the body.
    let mut compact = Vec::with_capacity(body.len());
    compact.push(b'{');
    for (position, entry) in order.iter().enumerate() {
        let field = &fields[(entry & 0xFF) as usize];
        if position > 0 {
            compact.push(b',');
        }
        if field.entry.len() == field.name.len() + 3 + field.token.len() {
            // No whitespace inside the entry: it is already `"name":value`.
            compact.extend_from_slice(field.entry);
        } else {
            compact.push(b'"');
            compact.extend_from_slice(field.name);
            compact.extend_from_slice(b"\":");
            compact.extend_from_slice(field.token);
        }
    }
    compact.push(b'}');
    Some(Bytes::from(compact))
}

/// The general check's requirement on a field's value, chosen by the field's name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    RequiredBase64,
    Base64,
    Integer,
    Name,
    /// A field the relay does not know: a number, a boolean or a short string.
    Other,
}

/// The rule of each known field name, by the name's [`Field::key`].
const RULES: [(u64, Rule); KNOWN_NAMES] = rules();

const KNOWN_NAMES: usize = REQUIRED_BASE64_FIELDS.len()
    + OPTIONAL_BASE64_FIELDS.len()
    + INTEGER_FIELDS.len()
    + NAME_FIELDS.len();

const fn rules() -> [(u64, Rule); KNOWN_NAMES] {
    let lists: [(&[&str], Rule); 4] = [
        (&REQUIRED_BASE64_FIELDS, Rule::RequiredBase64),
        (&OPTIONAL_BASE64_FIELDS, Rule::Base64),
        (&INTEGER_FIELDS, Rule::Integer),
        (&NAME_FIELDS, Rule::Name),
    ];
    let mut rules = [(0, Rule::Other); KNOWN_NAMES];
    let mut next = 0;
    let mut list = 0;
    while list < lists.len() {
        let (names, rule) = lists[list];
        let mut index = 0;
        while index < names.len() {
            let name = names[index].as_bytes();
            // A name of eight bytes or more could share its key with a longer name.
            assert!(name.len() < 8, "known names are shorter than a key");
            rules[next] = (key(name), rule);
            next += 1;
            index += 1;
        }
        list += 1;
    }
    rules
}

/// Returns a name's first eight bytes as a big-endian number, zero-padded. Names contain no
/// zero byte, so keys order names as their bytes do, and only names that share their first
/// eight bytes share a key.
const fn key(name: &[u8]) -> u64 {
    let mut prefix = [0u8; 8];
    let mut index = 0;
    while index < name.len() && index < prefix.len() {
        prefix[index] = name[index];
        index += 1;
    }
    u64::from_be_bytes(prefix)
}

/// A field as it appears in the body.
#[derive(Clone, Copy)]
struct Field<'a> {
    /// The name between its quotes: printable ASCII without `"` or `\`, so it needs no escape.
    name: &'a [u8],
    key: u64,
    /// The value's token as sent, with the quotes of a string.
    token: &'a [u8],
    kind: Kind,
    /// The body from the name's opening quote to the end of the value's token.
    entry: &'a [u8],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text up to the next `"`. Only [`is_plain`] text is valid: other text has escapes.
    String,
    /// `-?(0|[1-9][0-9]*)`, of any length.
    Integer,
    Boolean,
}

impl<'a> Field<'a> {
    const EMPTY: Self = Field {
        name: b"",
        key: 0,
        token: b"",
        kind: Kind::Boolean,
        entry: b"",
    };

    fn rule(&self) -> Rule {
        // Every known name is shorter than eight bytes, so only that name has its key.
        RULES
            .iter()
            .find(|(key, _)| *key == self.key)
            .map_or(Rule::Other, |&(_, rule)| rule)
    }

    /// Returns the text between a string's quotes.
    fn text(&self) -> &'a [u8] {
        &self.token[1..self.token.len() - 1]
    }

    /// Applies `rule`, this field's, to a token of one of the kinds above.
    fn is_valid(&self, rule: Rule) -> bool {
        let is_short_string = self.kind == Kind::String
            && self.text().len() <= MAX_SHORT_VALUE
            && is_plain(self.text());
        match rule {
            // The base64 alphabet is plain, so this also rejects escapes.
            Rule::RequiredBase64 | Rule::Base64 => {
                self.kind == Kind::String && is_base64(self.text())
            }
            Rule::Integer => self.kind == Kind::Integer && parse_u64(self.token).is_some(),
            Rule::Name => is_short_string,
            Rule::Other => is_short_string || self.kind != Kind::String,
        }
    }
}

/// Parses decimal digits into a u64; a `-` or more than 64 bits returns `None`.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Reads the fields of a body that is one JSON object with at most [`MAX_FIELDS`] fields of the
/// kinds above, and returns how many it stored in `fields`.
fn read_object<'a>(body: &'a [u8], fields: &mut [Field<'a>; MAX_FIELDS]) -> Option<usize> {
    let mut reader = Reader { body, at: 0 };
    reader.expect(b'{')?;
    let mut count = 0;
    loop {
        reader.skip_whitespace();
        let entry_start = reader.at;
        let name = reader.name()?;
        reader.expect(b':')?;
        reader.skip_whitespace();
        let (token, kind) = reader.value()?;
        *fields.get_mut(count)? = Field {
            name,
            key: key(name),
            token,
            kind,
            entry: &body[entry_start..reader.at],
        };
        count += 1;

        reader.skip_whitespace();
        match reader.next_byte()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    reader.skip_whitespace();
    (reader.at == body.len()).then_some(count)
}

/// Returns whether `text` is printable ASCII without `"` or `\`: a string that needs no escapes and
/// that JSON allows as it is.
fn is_plain(text: &[u8]) -> bool {
    text.iter().copied().all(is_plain_byte)
}

fn is_plain_byte(byte: u8) -> bool {
    (0x20..=0x7e).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// A position in the body. Each method reads one token and returns `None` for anything else.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Skips the four bytes that JSON counts as whitespace.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.body.get(self.at) {
            self.at += 1;
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = *self.body.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        (self.next_byte()? == byte).then_some(())
    }

    fn value(&mut self) -> Option<(&'a [u8], Kind)> {
        match self.body.get(self.at)? {
            b'"' => Some((self.string()?, Kind::String)),
            b'-' | b'0'..=b'9' => Some((self.integer()?, Kind::Integer)),
            b't' => Some((self.literal(b"true")?, Kind::Boolean)),
            b'f' => Some((self.literal(b"false")?, Kind::Boolean)),
            _ => None,
        }
    }

    /// Reads a name: a string token of [`is_plain`] text. Returns the text between the quotes.
    fn name(&mut self) -> Option<&'a [u8]> {
        let start = self.at + 1;
        if self.body.get(self.at) != Some(&b'"') {
            return None;
        }
        let rest = self.body.get(start..)?;
        let len = rest.iter().position(|&byte| !is_plain_byte(byte))?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(&rest[..len])
    }

    /// Reads a string token up to the next `"`, quotes included. A string with escapes may
    /// end early, at an escaped quote, but then contains a `\` and is not [`is_plain`].
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let inside = self.body.get(start..)?.strip_prefix(b"\"")?;
        let len = memchr::memchr(b'"', inside)?;
        self.at = start + len + 2;
        Some(&self.body[start..self.at])
    }

    /// Reads an integer token. A fraction or an exponent after it is not read, so the byte
    /// after the value is not a separator and the body goes to the general check.
    fn integer(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        if self.body.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits_start = self.at;
        while let Some(b'0'..=b'9') = self.body.get(self.at) {
            self.at += 1;
        }
        let digits = &self.body[digits_start..self.at];
        // JSON forbids an empty integer and a leading zero.
        let is_integer = !matches!(digits, [] | [b'0', _, ..]);
        is_integer.then(|| &self.body[start..self.at])
    }

    fn literal(&mut self, word: &'static [u8]) -> Option<&'a [u8]> {
        let token = self.body.get(self.at..self.at + word.len())?;
        if token != word {
            return None;
        }
        self.at += word.len();
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use proptest::prelude::*;

    use super::super::{check_and_compact, check_and_compact_any};
    use super::*;

    use super::super::tests::SJCL_ENVELOPE;

    #[test]
    fn sjcl_envelope_takes_single_pass() {
        let pretty = format!(
            " {}\n",
            SJCL_ENVELOPE.replace(',', ",\n\t").replace(':', " : ")
        );
        for body in [SJCL_ENVELOPE, &pretty] {
            let compact = compact(body.as_bytes()).expect("the single pass takes it");
            assert_eq!(
                Ok(compact),
                check_and_compact_any(body.as_bytes()),
                "{body}"
            );
        }
    }

    #[test]
    fn unusual_bodies_go_to_general_check() {
        let required = r#""iv":"AA==","salt":"AA==","ct":"AA==""#;
        let extras = [
            r#""n\u0061me":1"#,
            r#""note":"a\nb""#,
            r#""note":"café""#,
            r#""iv":"AQ==""#,
            r#""x":1e2"#,
            r#""x":1.5"#,
            r#""x":null"#,
            r#""x":{"y":1}"#,
            r#""x":[1]"#,
            r#""x":01"#,
            r#""x":-"#,
            r#""x":truex"#,
            r#""iter":-0"#,
            r#""iter":18446744073709551616"#,
            r#""mode":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa""#,
            r#""adata":"AB==""#,
        ];
        for extra in extras {
            let body = format!("{{{required},{extra}}}");
            assert!(compact(body.as_bytes()).is_none(), "{body}");
        }

        let too_many: String = (0..MAX_FIELDS - 2)
            .map(|n| format!(",\"x{n}\":1"))
            .collect();
        for body in [
            format!("{{{required}{too_many}}}"),
            r#"{"iv":"AA==","salt":"AA=="}"#.to_owned(),
            format!("{{{required}}} x"),
            format!("\u{feff}{{{required}}}"),
            format!("[{{{required}}}]"),
            "{}".to_owned(),
            String::new(),
        ] {
            assert!(compact(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn largest_integer_is_accepted() {
        let body = r#"{"iv":"AA==","salt":"AA==","ct":"AA==","ts":18446744073709551615,"x":-7}"#;
        let compact = compact(body.as_bytes()).expect("the single pass takes it");
        assert_eq!(Ok(compact), check_and_compact_any(body.as_bytes()));
    }

    #[test]
    fn long_names_sort_by_all_bytes() {
        let body =
            r#"{"iv":"AA==","salt":"AA==","ct":"AA==","abcdefgXij":1,"abcdefgh":2,"abcdefg":3}"#;
        let sorted = compact(body.as_bytes()).expect("the single pass takes it");
        assert_eq!(Ok(sorted), check_and_compact_any(body.as_bytes()));
    }

    #[test]
    fn names_sharing_eight_bytes_go_to_general_check() {
        for names in [
            ("abcdefgh1", "abcdefgh0"),
            ("abcdefgh", "abcdefgh0"),
            ("abcdefghij", "abcdefghij"),
        ] {
            let body = format!(
                r#"{{"iv":"AA==","salt":"AA==","ct":"AA==","{}":1,"{}":2}}"#,
                names.0, names.1
            );
            assert!(compact(body.as_bytes()).is_none(), "{body}");
            assert!(check_and_compact(body.as_bytes()).is_ok(), "{body}");
        }
    }

    /// Generates base64 of random bytes, padded or not.
    fn base64_value() -> impl Strategy<Value = String> {
        (prop::collection::vec(any::<u8>(), 0..40), any::<bool>()).prop_map(|(bytes, padded)| {
            let engine = if padded { &STANDARD } else { &STANDARD_NO_PAD };
            format!("\"{}\"", engine.encode(bytes))
        })
    }

    /// Generates a string of printable ASCII, up to a few bytes past [`MAX_SHORT_VALUE`]. With
    /// `quotes`, it may contain `"` and `\`, which end it early or start an escape.
    fn printable_value(quotes: bool) -> impl Strategy<Value = String> {
        prop::collection::vec(0x20u8..0x7f, 0..70).prop_map(move |mut bytes| {
            if !quotes {
                bytes.retain(|&byte| byte != b'"' && byte != b'\\');
            }
            format!("\"{}\"", String::from_utf8(bytes).unwrap())
        })
    }

    /// Generates a value token of any kind: base64, numbers, strings and a list of hard cases.
    fn any_value() -> impl Strategy<Value = String> {
        let hard_cases = [
            "0",
            "-0",
            "-1",
            "01",
            "1e2",
            "1E2",
            "1.5",
            "-",
            "18446744073709551615",
            "18446744073709551616",
            "true",
            "false",
            "null",
            "tru",
            "truex",
            "\"ccm\"",
            "\"\"",
            r#""caf\u00e9""#,
            r#""a\nb""#,
            "\"é\"",
            r#""\"""#,
            "{\"y\":1}",
            "[1]",
            "\"AB==\"",
            "\"A*==\"",
            "\"\u{7f}\"",
            "\"a\nb\"",
        ];
        prop_oneof![
            base64_value(),
            any::<u64>().prop_map(|number| number.to_string()),
            prop::sample::select(hard_cases.to_vec()).prop_map(str::to_owned),
            printable_value(true),
        ]
    }

    /// Generates a field: a known name, a random two-letter one or an unusual one, mostly with a
    /// value of the kind its name calls for, so that many bodies are valid, and sometimes with
    /// any value.
    fn field() -> impl Strategy<Value = (String, String)> {
        let known = [
            "iv", "salt", "ct", "adata", "v", "iter", "ks", "ts", "mode", "cipher",
        ];
        let unusual = ["", r"\u0069v", r"n\u0061me", "é", "a\"b", "\u{7f}"];
        let letter = || (b'a'..=b'z').prop_map(char::from);
        let other = (letter(), letter()).prop_map(|(first, second)| format!("{first}{second}"));
        let name = prop_oneof![
            6 => prop::sample::select(known.to_vec()).prop_map(str::to_owned),
            6 => other,
            1 => prop::sample::select(unusual.to_vec()).prop_map(str::to_owned),
        ];
        name.prop_flat_map(|name| {
            let fitting = match name.as_str() {
                "iv" | "salt" | "ct" | "adata" => base64_value().boxed(),
                "v" | "iter" | "ks" | "ts" => any::<u64>().prop_map(|n| n.to_string()).boxed(),
                "mode" | "cipher" => printable_value(false).boxed(),
                _ => prop_oneof![
                    any::<i64>().prop_map(|n| n.to_string()),
                    any::<bool>().prop_map(|b| b.to_string()),
                    printable_value(false),
                ]
                .boxed(),
            };
            (
                Just(format!("\"{name}\"")),
                prop_oneof![9 => fitting, 1 => any_value()],
            )
        })
    }

    /// Generates JSON's whitespace, and rarely a space that JSON does not allow.
    fn whitespace() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            60 => prop::sample::select(&["", "", "", " ", "\n", "\t", "\r\n  "][..]),
            1 => prop::sample::select(&["\u{a0}", "\u{b}", "\u{c}"][..]),
        ]
    }

    /// Generates a body of the three required fields and up to fourteen others, in any order,
    /// with any whitespace: mostly valid envelopes, many of them in the usual form.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let required = ["iv", "salt", "ct"].map(|name| {
            let value = prop_oneof![9 => base64_value(), 1 => any_value()];
            (Just(format!("\"{name}\"")), value)
        });
        // Mostly a few, as SJCL writes, and sometimes up to one past the limit.
        let count = prop_oneof![3 => 0..8usize, 1 => 8..15usize];
        let others = count.prop_flat_map(|count| prop::collection::vec(field(), count));
        let fields = (required, others)
            .prop_map(|(required, others)| [required.to_vec(), others].concat())
            .prop_shuffle();
        (fields, prop::collection::vec(whitespace(), 4 * 20)).prop_map(|(fields, spaces)| {
            let mut spaces = spaces.into_iter().cycle();
            let mut body = format!("{}{{", spaces.next().unwrap());
            for (index, (name, value)) in fields.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                let [before, after_name, after_colon, after_value] =
                    [(); 4].map(|()| spaces.next().unwrap());
                body.push_str(&format!(
                    "{before}{name}{after_name}:{after_colon}{value}{after_value}"
                ));
            }
            body.push('}');
            body.push_str(spaces.next().unwrap());
            body.into_bytes()
        })
    }

    /// Generates edits at random places: bytes that matter to JSON, or any byte.
    fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
        let byte = prop_oneof![
            prop::sample::select(&b"\"\\,:{}[] \n0-e.9ntf\x00\x80"[..]),
            any::<u8>(),
        ];
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, byte), 1..4)
    }

    fn assert_agrees(body: &[u8]) -> Result<(), TestCaseError> {
        if let Some(single_pass) = compact(body) {
            prop_assert_eq!(
                Ok(single_pass),
                check_and_compact_any(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn single_pass_agrees_with_general(body in body()) {
            assert_agrees(&body)?;
        }

        #[test]
        fn single_pass_agrees_after_edits(mut body in body(), edits in edits()) {
            for (index, operation, byte) in edits {
                let at = index.index(body.len() + 1);
                match operation {
                    0 => body.insert(at, byte),
                    1 if at < body.len() => body[at] = byte,
                    _ if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.push(byte),
                }
            }
            assert_agrees(&body)?;
        }

        #[test]
        fn single_pass_takes_usual_envelopes(
            iv in prop::collection::vec(any::<u8>(), 0..20),
            ct in prop::collection::vec(any::<u8>(), 0..200),
            iter in any::<u64>(),
            extra in prop_oneof![Just("true"), Just("-12"), Just("\"id 7\"")],
        ) {
            let body = format!(
                r#"{{"iv":"{}","salt":"AA==","ct":"{}","iter":{iter},"mode":"ccm","y":{extra}}}"#,
                STANDARD.encode(iv),
                STANDARD.encode(ct)
            );
            prop_assert!(compact(body.as_bytes()).is_some(), "{}", body);
            assert_agrees(body.as_bytes())?;
        }
    }
}
