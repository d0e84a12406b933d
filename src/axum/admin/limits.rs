//! The rules the handlers enforce, stated in the document: the manager's size limits, the
//! text rule of names and owners, the grammars of expiries, grace periods and cursors, the
//! range of page sizes, and the shape of a bulk selection. Each schema accepts exactly what
//! the server accepts, so that a client (or a fuzzer) that follows the document is never
//! refused for the form of its request.

use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType,
};
use utoipa::openapi::{OpenApi, RefOr, Type};

use crate::expiry::MAX_DURATION;
use crate::record::Limits;
use crate::store::{Cursor, MAX_PAGE_LIMIT};

/// Characters that [`str::trim`] removes and [`char::is_whitespace`] names (Unicode
/// `White_Space`), as a regular-expression class body: the ASCII ones and the others.
const WHITESPACE: &str = concat!(
    r"\t-\r ",
    r"\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
);
/// The non-ASCII part of [`WHITESPACE`].
const WHITESPACE_BEYOND_ASCII: &str =
    r"\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// Characters text may hold: anything but control characters (`char::is_control`), except
/// tab and line feed.
const TEXT_CHAR: &str = r"[^\x00-\x08\x0B-\x1F\x7F-\x9F]";

/// The longest grace period (the manager's rule).
const MAX_GRACE_SECS: u64 = crate::manager::MAX_ROTATION_GRACE.as_secs();

/// Text of at most `max` characters without control characters (but tab and line feed);
/// `required`: with at least one character that is not whitespace.
fn text(max: usize, required: bool) -> Schema {
    let pattern = if required {
        format!("^{TEXT_CHAR}*[^\\x00-\\x20\\x7F-\\x9F{WHITESPACE_BEYOND_ASCII}]{TEXT_CHAR}*$")
    } else {
        format!("^{TEXT_CHAR}*$")
    };
    let builder = ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .max_length(Some(max))
        .pattern(Some(pattern));
    if required {
        builder.min_length(Some(1)).into()
    } else {
        builder.into()
    }
}

/// At most `max` items (for an array; a string or null, the other forms of the properties
/// it constrains, pass).
fn items(max: usize) -> Schema {
    AnyOfBuilder::new()
        .item(ArrayBuilder::new().max_items(Some(max)))
        .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])))
        .into()
}

/// The metadata rule: entries, key and value lengths.
fn metadata(limits: &Limits) -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .max_properties(Some(limits.max_metadata_entries()))
        .property_names(Some(text(limits.max_metadata_key_chars(), true)))
        .additional_properties(Some(text(limits.max_metadata_value_chars(), false)))
        .into()
}

/// A regular expression matching the decimal numbers `min..=max` (`min` 0 or 1), leading
/// zeros allowed, as [`u64`]'s parser reads them.
fn number_upto(max: u64, min_one: bool) -> String {
    let lowest = u8::from(min_one);
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    if n == 1 {
        return format!("0*([{lowest}-{max}])");
    }
    // Shorter numbers: one digit, then every length below `n`.
    let mut alternatives = vec![format!("[{lowest}-9]")];
    for len in 2..n {
        alternatives.push(format!("[1-9][0-9]{{{}}}", len - 1));
    }
    // Numbers of `n` digits below `max`: a prefix of `max`, a smaller digit, then anything.
    for (i, &d) in digits.iter().enumerate() {
        let low = u8::from(i == 0);
        if d > low {
            let prefix: String = digits[..i].iter().map(|d| char::from(b'0' + d)).collect();
            let rest = n - i - 1;
            let tail = if rest == 0 {
                String::new()
            } else {
                format!("[0-9]{{{rest}}}")
            };
            alternatives.push(format!("{prefix}[{low}-{}]{tail}", d - 1));
        }
    }
    alternatives.push(max.to_string());
    format!("0*({})", alternatives.join("|"))
}

/// `<N>d`, `<N>h`, `<N>m` or `<N>s` for durations up to `max_secs` (`min_one`: at least one
/// of the unit), with surrounding whitespace.
fn durations(max_secs: u64, min_one: bool) -> String {
    let units = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let forms: Vec<String> = units
        .iter()
        .map(|&(unit, per)| format!("{}{unit}", number_upto(max_secs / per, min_one)))
        .collect();
    forms.join("|")
}

/// An expiry: `never`, a duration of up to 100 years, or an RFC 3339 instant (which must be
/// in the future: a rule no schema states).
fn expiry() -> Schema {
    let words = format!(
        "^[{WHITESPACE}]*(never|{})[{WHITESPACE}]*$",
        durations(MAX_DURATION.as_secs(), true)
    );
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .pattern(Some(words)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .into()
}

/// A grace period: a duration of up to 30 days.
fn grace() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .pattern(Some(format!(
            "^[{WHITESPACE}]*({})[{WHITESPACE}]*$",
            durations(MAX_GRACE_SECS, false)
        )))
        .into()
}

/// A prune's age: a duration of up to 100 years (zero included).
fn older_than() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .pattern(Some(format!(
            "^[{WHITESPACE}]*({})[{WHITESPACE}]*$",
            durations(MAX_DURATION.as_secs(), false)
        )))
        .into()
}

/// An IPv4 address: four decimal octets, no leading zeros.
const IPV4: &str = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

/// An IPv6 address in hex groups (RFC 4291 section 2.2 forms 1 and 2; the dotted IPv4 tail
/// of form 3 is refused by [`crate::ip::parse_list`]).
const IPV6: &str = concat!(
    "(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
    "|([0-9A-Fa-f]{1,4}:){1,7}:",
    "|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}",
    "|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}",
    "|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}",
    "|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}",
    "|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}",
    "|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}",
    "|:((:[0-9A-Fa-f]{1,4}){1,7}|:))"
);

/// One allowed IP range as [`crate::ip::parse_list`] reads it: an address with an optional
/// prefix length (`/0` to `/32`, `/0` to `/128`, no leading zeros), surrounding whitespace
/// ignored.
fn ip_range_pattern() -> String {
    format!(
        "^[{WHITESPACE}]*({IPV4}(/(3[0-2]|[12]?[0-9]))?|{IPV6}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)[{WHITESPACE}]*$"
    )
}

/// The list of allowed IP ranges: at most `max`, each as [`ip_range_pattern`] states.
fn ip_ranges(max: usize) -> Schema {
    AnyOfBuilder::new()
        .item(
            ArrayBuilder::new().max_items(Some(max)).items(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(ip_range_pattern())),
            ),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])))
        .into()
}

/// Adds `rule` to property `property` of component `component`; `false` if there is no
/// such property.
fn constrain(doc: &mut OpenApi, component: &str, property: &str, rule: Schema) -> bool {
    let Some(RefOr::T(Schema::Object(object))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(component))
    else {
        return false;
    };
    let Some(slot) = object.properties.get_mut(property) else {
        return false;
    };
    let original = std::mem::replace(slot, RefOr::T(Schema::default()));
    *slot = AllOfBuilder::new().item(original).item(rule).into();
    true
}

/// States the rules in `doc`. Returns the rules that found no place (empty unless the
/// bodies changed without this list).
pub(super) fn apply(doc: &mut OpenApi, limits: &Limits) -> Vec<String> {
    let mut missing = Vec::new();
    let mut rule = |doc: &mut OpenApi, component: &str, property: &str, schema: Schema| {
        if !constrain(doc, component, property, schema) {
            missing.push(format!("{component}.{property}"));
        }
    };
    for body in ["CreateBody", "UpdateBody"] {
        rule(doc, body, "name", text(limits.max_name_chars(), true));
        rule(
            doc,
            body,
            "description",
            text(limits.max_description_chars(), false),
        );
        rule(doc, body, "scopes", items(limits.max_scopes()));
        rule(doc, body, "projects", items(limits.max_projects()));
        rule(doc, body, "metadata", metadata(limits));
        rule(
            doc,
            body,
            "allowed_ips",
            ip_ranges(limits.max_allowed_ips()),
        );
        rule(doc, body, "expires", expiry());
    }
    rule(
        doc,
        "CreateBody",
        "owner",
        text(limits.max_principal_chars(), true),
    );
    rule(doc, "RotateBody", "grace", grace());
    rule(doc, "RotateBody", "expires", expiry());
    rule(doc, "BulkBody", "ids", items(limits.max_bulk_ids()));
    rule(doc, "PruneBody", "older_than", older_than());

    // A bulk selection is `ids` (an array) or `filter` (an object), not both.
    let bulk = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("BulkBody"));
    match bulk {
        Some(slot) => {
            let exactly_one = OneOfBuilder::new()
                .item(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::AnyValue)
                        .property("ids", ArrayBuilder::new())
                        .required("ids"),
                )
                .item(
                    ObjectBuilder::new()
                        .schema_type(SchemaType::AnyValue)
                        .property("filter", ObjectBuilder::new())
                        .required("filter"),
                );
            let original = std::mem::replace(slot, RefOr::T(Schema::default()));
            *slot = AllOfBuilder::new().item(original).item(exactly_one).into();
        }
        None => missing.push("BulkBody".to_owned()),
    }

    // Paging parameters; `GET /self` has no `owner` (it is the caller's).
    for item in doc.paths.paths.values_mut() {
        for op in [item.get.as_mut()].into_iter().flatten() {
            let self_list = op.operation_id.as_deref() == Some("self_list");
            let Some(params) = op.parameters.as_mut() else {
                continue;
            };
            if self_list {
                params.retain(|p| p.name != "owner");
            }
            for p in params.iter_mut() {
                let schema = match p.name.as_str() {
                    "after" => ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String)
                        .pattern(Some(Cursor::PATTERN))
                        .into(),
                    "limit" => ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer)
                        .minimum(Some(1))
                        .maximum(Some(MAX_PAGE_LIMIT as f64))
                        .into(),
                    _ => continue,
                };
                p.schema = Some(RefOr::T(schema));
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON Schema validator of `^(pattern)$`, compiled once.
    fn matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = serde_json::json!({"type": "string", "pattern": format!("^({pattern})$")});
        let validator = jsonschema::validator_for(&schema).unwrap();
        move |value| validator.is_valid(&serde_json::json!(value))
    }

    fn matches(pattern: &str, value: &str) -> bool {
        matcher(pattern)(value)
    }

    /// The number patterns match exactly the range, with leading zeros, as `u64` parses.
    #[test]
    fn number_patterns_match_exactly_their_range() {
        for (max, min_one) in [
            (36_500, true),
            (30, false),
            (720, false),
            (9, true),
            (1000, true),
        ] {
            let p = number_upto(max, min_one);
            let is_match = matcher(&p);
            for n in 0..=max + 50 {
                let expected = n <= max && (n >= 1 || !min_one);
                assert_eq!(is_match(&n.to_string()), expected, "{p}: {n}");
            }
            assert!(matches(&p, &format!("00{max}")), "{p}: leading zeros");
            for bad in ["", "+1", "-1", "1 ", "1.0", "x"] {
                assert!(!matches(&p, bad), "{p}: {bad:?}");
            }
        }
    }

    /// The IP range pattern and `ip::parse_list` accept exactly the same strings, over every
    /// IPv4 form built from boundary octets and prefixes, and IPv6 forms built from groups,
    /// `::`, dotted tails and prefixes.
    #[test]
    fn ip_range_pattern_agrees_with_the_parser() {
        let pattern = ip_range_pattern();
        let schema = serde_json::json!({"type": "string", "pattern": pattern});
        let validator = jsonschema::validator_for(&schema).unwrap();
        let check = |s: &str| {
            let by_pattern = validator.is_valid(&serde_json::json!(s));
            let by_parser = crate::ip::parse_list([s]).is_ok();
            assert_eq!(
                by_pattern, by_parser,
                "{s:?}: pattern {by_pattern}, parser {by_parser}"
            );
        };
        let octets = [
            "0", "1", "9", "10", "99", "100", "199", "249", "250", "255", "256", "00", "01", "300",
            "",
        ];
        let v4_prefixes = [
            "", "/0", "/8", "/29", "/30", "/32", "/33", "/08", "/", "/-1", "/ 8",
        ];
        for a in octets {
            for b in ["0", "255", "01"] {
                for p in v4_prefixes {
                    check(&format!("{a}.{b}.0.1{p}"));
                    check(&format!("10.{a}.{b}.0{p}"));
                }
            }
        }
        for extra in [
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            " 10.0.0.0/8 ",
            "\u{3000}10.0.0.1",
            "10.0.0.1\t",
            "x10.0.0.1",
        ] {
            check(extra);
        }
        // IPv6: every sequence of up to 9 pieces from a small alphabet.
        let pieces = ["0", "ab", "FFFF", "12345", "g", ":", "::", "1.2.3.4"];
        let mut forms = vec![String::new()];
        for _ in 0..6 {
            let mut next = Vec::new();
            for f in &forms {
                for p in pieces {
                    next.push(format!("{f}{p}"));
                }
            }
            forms.extend(next);
            forms.dedup();
        }
        let mut seen = std::collections::HashSet::new();
        for f in forms.iter().filter(|f| f.contains(':')) {
            if seen.insert(f.clone()) {
                check(f);
            }
        }
        for long in [
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4::5:6:7:8",
            "1::2::3",
            "2001:db8::/32",
            "2001:db8::/128",
            "2001:db8::/129",
            "2001:db8::/032",
            "::/0",
            "::ffff:10.0.0.1",
            "::ffff:10.0.0.0/104",
            "fe80::1%eth0",
            // Found by schemathesis: leading zeros in prefixes, Unicode spaces around.
            "\u{2003}A330::d302:F/001\u{2028}",
            "\u{c}\u{2005}\u{1680}C3:F:0:299b:c:0:64e:5825/000006\u{c}\u{85}\n",
            "\u{85}7.255.252.116\u{2003}\u{a0}",
            "\u{c}120.250.53.254/00000032\u{2000}",
            "354:c8a8::8bBA/00000000128",
            "\u{2009}\u{b}5A7:3::Ab:3:2FBC:2/01",
            "6.255.8.166/00032\u{85}\u{2028}\u{c} \u{3000}",
            "\u{2005}206.159.252.91/005\u{3000}\t",
            "\u{2029}7:5D1E::04:01B:7\u{200a}",
            "0c:a:18:5:0B70:04:cBb9::",
            "\u{2000}::\u{85}\t",
        ] {
            check(long);
        }
    }

    proptest::proptest! {
        /// Whatever the pattern lets a client send, the parser takes.
        #[test]
        fn strings_the_ip_range_pattern_generates_parse(
            s in proptest::string::string_regex(
                ip_range_pattern().trim_start_matches('^').trim_end_matches('$'),
            ).unwrap()
        ) {
            proptest::prop_assert!(crate::ip::parse_list([&s]).is_ok(), "{:?}", s);
        }
    }

    /// The duration grammars agree with the parser: what the pattern matches parses within
    /// the bound, and the bound's neighbours outside it are refused by both.
    #[test]
    fn duration_patterns_agree_with_the_parser() {
        let grace = durations(MAX_GRACE_SECS, false);
        for (text, ok) in [
            ("0s", true),
            ("30d", true),
            ("31d", false),
            ("720h", true),
            ("721h", false),
            ("43200m", true),
            ("2592000s", true),
            ("2592001s", false),
            ("7w", false),
        ] {
            assert_eq!(matches(&grace, text), ok, "grace {text}");
            let parsed = crate::expiry::parse_duration(text);
            assert_eq!(
                parsed.is_some_and(|d| d.as_secs() <= MAX_GRACE_SECS),
                ok,
                "parser {text}"
            );
        }
        let expiry = durations(MAX_DURATION.as_secs(), true);
        for (text, ok) in [
            ("1s", true),
            ("0d", false),
            ("36500d", true),
            ("36501d", false),
        ] {
            assert_eq!(matches(&expiry, text), ok, "expiry {text}");
        }
    }

    /// The text rule is the manager's: control characters refused, blank required text
    /// refused (Unicode whitespace), tab and line feed allowed inside.
    #[test]
    fn text_patterns_agree_with_the_manager() {
        let schema = |required| serde_json::to_value(text(1000, required)).unwrap();
        for value in [
            "ci deploy",
            "名前",
            "a\tb",
            "a\nb",
            " x ",
            "", // optional only
            "\u{3000}",
            "\u{1F}",
            "a\u{85}",
            "\u{7F}",
            "\u{A0}x",
        ] {
            for required in [true, false] {
                let manager = Limits::check_text("name", value, 1000, required).is_ok();
                let document = jsonschema::is_valid(&schema(required), &serde_json::json!(value));
                assert_eq!(document, manager, "{value:?} required={required}");
            }
        }
    }
}
