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
    Fallback(usize),
    Fault(&'static str),
    /// minimumNecessary's resourceTypes does not list the type.
    Dropped(String),
}

#[derive(Default)]
pub struct Block {
    pub out: Vec<u8>,
    pub events: Vec<(usize, Event)>,
    pub blank_lines: usize,
    pub input_types: FxHashMap<String, usize>,
    pub output_types: FxHashMap<String, usize>,
    pub output_resources: usize,
    pub labels: FxHashMap<&'static str, usize>,
    /// Lines handled (all of them, unless told to stop at the first event).
    pub handled: usize,
}

enum Line {
    Written(String, Vec<&'static str>),
    Fault(&'static str),
    Dropped(String),
    Fallback,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
}

pub fn process(plan: &Plan, session: &mut Session, context: &Context, lines: &[&[u8]], stop_at_event: bool) -> Block {
    let mut block = Block { out: Vec::with_capacity(lines.iter().map(|l| l.len()).sum::<usize>() + 1024), ..Block::default() };
    block.handled = lines.len();
    let mut arena = std::mem::take(&mut session.arena);
    for (index, line) in lines.iter().enumerate() {
        if is_blank(line) {
            block.blank_lines += 1;
            continue;
        }
        let start = block.out.len();
        arena.reset();
        let event = match resource_line(plan, session, context, line, &mut block.out, &arena) {
            Line::Written(resource_type, codes) => {
                *block.input_types.entry(resource_type.clone()).or_default() += 1;
                *block.output_types.entry(resource_type).or_default() += 1;
                block.output_resources += 1;
                for code in codes {
                    *block.labels.entry(code).or_default() += 1;
                }
                continue;
            }
            Line::Fault(kind) => Event::Fault(kind),
            Line::Dropped(resource_type) => {
                *block.input_types.entry(resource_type.clone()).or_default() += 1;
                Event::Dropped(resource_type)
            }
            Line::Fallback => {
                block.out.truncate(start);
                Event::Fallback(start)
            }
        };
        block.events.push((index, event));
        if stop_at_event {
            block.handled = index + 1;
            break;
        }
    }
    arena.reset();
    session.arena = arena;
    block
}

fn resource_line(
    plan: &Plan,
    session: &mut Session,
    context: &Context,
    line: &[u8],
    out: &mut Vec<u8>,
    arena: &Bump,
) -> Line {
    let parsed = match json::parse(line, arena) {
        Ok(parsed) => parsed,
        Err(ReadError::Syntax) => {
            return Line::Fault(if std::str::from_utf8(line).is_ok() { "not_json" } else { "invalid_utf8" })
        }
        Err(ReadError::TooDeep) => return Line::Fault("too_deep"),
    };
    if parsed.beyond_double {
        return Line::Fallback; // the Python engine reads such numbers on its exact path
    }
    if parsed.depth > MAX_DEPTH {
        return Line::Fault("too_deep");
    }
    if parsed.digits > MAX_NUMBER_DIGITS {
        return Line::Fallback;
    }
    let mut value = parsed.value;
    if !matches!(value, json::Json::Obj(_)) {
        return Line::Fault("not_object");
    }
    let resource_type = match value.get("resourceType") {
        None | Some(json::Json::Null) => return Line::Fault("no_resource_type"),
        Some(json::Json::Str(s)) if plan.is_resource_type(s) => s.to_string(),
        Some(_) => return Line::Fault("unknown_resource_type"),
    };
    if let Some(listed) = &plan.params.listed {
        if !listed.contains(&resource_type) {
            return Line::Dropped(resource_type);
        }
    }
    let Some(root) = plan.roots.get(&resource_type) else { return Line::Fallback };
    if root.dynamic || root.filtered {
        return Line::Fallback;
    }
    if let Some(tree) = &root.prune {
        value = walk::prune(&value, tree, true, arena);
    }
    let Some(json::Json::Str(type_text)) = value.get("resourceType") else { return Line::Fallback };
    match Walk::resource_line(plan, session, context, out, &value, type_text, root) {
        Ok(meta) => {
            let codes = meta.map_or_else(Vec::new, |(start, end)| walk::label_codes(&out[start..end], arena));
            out.push(b'\n');
            Line::Written(resource_type, codes)
        }
        Err(_) => Line::Fallback,
    }
}
