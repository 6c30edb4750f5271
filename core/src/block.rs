//! A block of NDJSON lines through the plan (stream.py `_resource_line` for each): blank lines
//! counted, bad lines classified as the Python engine classifies them, resources walked; a line the
//! core does not finish is a fallback, which the caller hands to the Python engine.

use bumpalo::Bump;
use rustc_hash::FxHashMap;

use crate::json::{self, ReadError};
use crate::plan::Plan;
use crate::walk::{self, Context, Session, Walk};
use crate::{MAX_DEPTH, MAX_NUMBER_DIGITS};

pub enum Event {
    /// The Python engine processes this line; its output goes at this position of `out`.
    /// `missing`: the line needed a part of the plan not exported yet.
    Fallback { at: usize, missing: bool },
    Fault(&'static str),
    /// minimumNecessary's resourceTypes does not list the type.
    Dropped(String),
}

#[derive(Default)]
pub struct Block {
    pub out: Vec<u8>,
    /// (line index in the block, event, the line's start and end in the data)
    pub events: Vec<(usize, Event, usize, usize)>,
    pub blank_lines: usize,
    pub input_types: FxHashMap<String, usize>,
    pub output_types: FxHashMap<String, usize>,
    pub output_resources: usize,
    pub labels: FxHashMap<&'static str, usize>,
    /// Lines handled, and the bytes they took (all of them, unless the block stopped early).
    pub lines: usize,
    pub consumed: usize,
}

enum Line<'l> {
    Written(&'l str, walk::LabelCounts), // the resource type, and its labels counted by code
    Fault(&'static str),
    Dropped(String),
    Fallback { missing: bool },
}

/// One more of a resource type (no allocation once the type is there).
fn count(types: &mut FxHashMap<String, usize>, resource_type: &str) {
    match types.get_mut(resource_type) {
        Some(n) => *n += 1,
        None => {
            types.insert(resource_type.to_string(), 1);
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

pub struct Options {
    pub max_line_bytes: usize,
    /// Stop after the first line that is not written (the run stops at a bad line).
    pub stop_at_event: bool,
    /// Stop after a line that fell back for a part of the plan not exported yet: once the Python
    /// engine has walked it, the export brings that part for the lines after it.
    pub stop_at_missing: bool,
}

/// The lines of `data` (each up to and with its `\n`; a last one without), as stream.py reads them.
pub fn process(plan: &Plan, session: &mut Session, context: &Context, data: &[u8], options: &Options) -> Block {
    let mut out = std::mem::take(&mut session.spare);
    out.clear();
    out.reserve(data.len() + 1024);
    let mut block = Block { out, ..Block::default() };
    let mut arena = std::mem::take(&mut session.arena);
    let mut at = 0;
    let mut index = 0;
    while at < data.len() {
        let end = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |i| at + i + 1);
        let line = &data[at..end];
        let line_index = index;
        let line_start = at;
        index += 1;
        at = end;
        let event = if line.len() > options.max_line_bytes.saturating_add(1) {
            Event::Fault("line_too_long")
        } else if is_blank(line) {
            block.blank_lines += 1;
            continue;
        } else {
            let start = block.out.len();
            arena.reset();
            // A panic is a bug of the core: the line goes to the Python engine, the run goes on.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                resource_line(plan, session, context, line, &mut block.out, &arena)
            }))
            .unwrap_or(Line::Fallback { missing: false });
            match outcome {
                Line::Written(resource_type, codes) => {
                    count(&mut block.input_types, resource_type);
                    count(&mut block.output_types, resource_type);
                    block.output_resources += 1;
                    for (code, n) in walk::LABEL_CODES.iter().zip(codes) {
                        if n > 0 {
                            *block.labels.entry(code).or_default() += n as usize;
                        }
                    }
                    continue;
                }
                Line::Fault(kind) => Event::Fault(kind),
                Line::Dropped(resource_type) => {
                    count(&mut block.input_types, &resource_type);
                    Event::Dropped(resource_type)
                }
                Line::Fallback { missing } => {
                    block.out.truncate(start);
                    block.events.push((line_index, Event::Fallback { at: start, missing }, line_start, end));
                    if options.stop_at_event || (missing && options.stop_at_missing) {
                        break;
                    }
                    continue;
                }
            }
        };
        block.events.push((line_index, event, line_start, end));
        if options.stop_at_event {
            break;
        }
    }
    block.lines = index;
    block.consumed = at;
    arena.reset();
    session.arena = arena;
    block
}

fn resource_line<'l>(
    plan: &Plan,
    session: &mut Session,
    context: &Context,
    line: &'l [u8],
    out: &mut Vec<u8>,
    arena: &'l Bump,
) -> Line<'l> {
    let parsed = match json::parse(line, arena) {
        Ok(parsed) => parsed,
        Err(ReadError::Syntax) => {
            return Line::Fault(if std::str::from_utf8(line).is_ok() { "not_json" } else { "invalid_utf8" })
        }
        Err(ReadError::TooDeep) => return Line::Fault("too_deep"),
        Err(ReadError::BeyondDouble) => return Line::Fallback { missing: false },
    };
    if parsed.beyond_double {
        return Line::Fallback { missing: false }; // the Python engine reads such numbers on its exact path
    }
    if parsed.depth > MAX_DEPTH {
        return Line::Fault("too_deep");
    }
    if parsed.digits > MAX_NUMBER_DIGITS {
        return Line::Fallback { missing: false };
    }
    let mut value = parsed.value;
    if !matches!(value, json::Json::Obj(_)) {
        return Line::Fault("not_object");
    }
    let resource_type: &'l str = match value.get("resourceType") {
        None | Some(json::Json::Null) => return Line::Fault("no_resource_type"),
        Some(json::Json::Str(s)) if plan.is_resource_type(s) => s,
        Some(_) => return Line::Fault("unknown_resource_type"),
    };
    if let Some(listed) = &plan.params.listed {
        if !listed.contains(resource_type) {
            return Line::Dropped(resource_type.to_string());
        }
    }
    if plan.params.filtered.contains(resource_type) {
        return Line::Fallback { missing: false };
    }
    let Some(root) = plan.roots.get(resource_type) else { return Line::Fallback { missing: true } };
    if root.dynamic {
        return Line::Fallback { missing: false };
    }
    if let Some(tree) = &root.prune {
        value = walk::prune(&value, tree, true, arena);
    }
    let Some(json::Json::Str(type_text)) = value.get("resourceType") else { return Line::Fallback { missing: false } };
    match Walk::resource_line(plan, session, context, out, arena, &value, type_text, root) {
        Ok(meta) => {
            let codes = meta.map_or([0; walk::LABEL_CODES.len()], |(start, end)| walk::label_codes(&out[start..end], arena));
            out.push(b'\n');
            Line::Written(resource_type, codes)
        }
        Err(fallback) => Line::Fallback { missing: fallback.missing },
    }
}
