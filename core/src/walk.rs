//! Applying the exported plan to one resource, writing its output as it goes (walker.py is the
//! reference: this walk follows its interpreter step for step).
//!
//! Values are read as the Python engine's parser reads them (strings trimmed as .NET trims, booleans
//! and integers given as strings converted, empty values dropped), the slot's action is applied,
//! and the member is written straight into the output; a member whose value comes out empty is
//! taken back (`rollback`). A resource's `meta` is remembered where it was written, so that the
//! security labels can rebuild it in place once the whole resource has been walked.
//!
//! Anything the Python engine would treat differently from the plain path (a key the export has no
//! slot for yet, a value that does not parse, a method the core does not run, a date out of range)
//! is a `Fallback`: the line goes back to the Python engine, which stays the reference.

use std::borrow::Cow;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use rustc_hash::FxHashMap;

use crate::dates;
use crate::json::{self, Json};
use crate::methods::{cryptohash, dateshift, encrypt, redact};
use crate::numbers;
use crate::plan::*;
use crate::write;

/// The line goes back to the Python engine; `missing`: because the export lacks a part of the plan
/// the Python engine builds when it walks the line (the next lines may then need it too).
#[derive(Debug)]
pub struct Fallback {
    pub missing: bool,
}

const FALLBACK: Fallback = Fallback { missing: false };
const MISSING: Fallback = Fallback { missing: true };

pub type Walked<T> = Result<T, Fallback>;

type Pairs<'a> = [(&'a str, Json<'a>)];

/// A primitive value as the parser leaves it.
pub enum Val<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    /// A decimal: its output text, and how it was given (a number token, or a string).
    Dec { text: &'a str, source: &'a str, token: bool },
}

impl<'a> Val<'a> {
    /// `value_text`: `Value.ToString()` as .NET prints it (what cryptoHash and encrypt read).
    fn text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Bool(true) => Cow::Borrowed("True"),
            Val::Bool(false) => Cow::Borrowed("False"),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Dec { text, .. } => Cow::Borrowed(text),
        }
    }

    fn as_str(&self) -> Walked<&'a str> {
        match self {
            Val::Str(s) => Ok(s),
            _ => Err(FALLBACK),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::Str(s) => write::string(out, s),
            Val::Bool(true) => out.extend_from_slice(b"true"),
            Val::Bool(false) => out.extend_from_slice(b"false"),
            Val::Int(i) => write::integer(out, *i),
            Val::Dec { text, .. } => out.extend_from_slice(text.as_bytes()),
        }
    }
}

/// The file and folder the `file` and `folder` date-shift scopes key on ("" when none).
pub struct Context {
    pub file: String,
    pub folder: String,
}

/// What one thread keeps between resources: recent hashes (ids and references repeat across a
/// patient's resources) and random bytes for IVs. Bounded: cleared when full.
#[derive(Default)]
pub struct Session {
    hashes: FxHashMap<Box<str>, [u8; 64]>,
    references: FxHashMap<String, String>,
    ivs: encrypt::Ivs,
    scratch: Bump, // for re-reading a written meta
    pub arena: Bump, // the trees of a block's lines, reset per line
    pub spare: Vec<u8>, // the last block's output buffer, kept for the next block
}

const CACHE_LIMIT: usize = 1 << 14;

fn remember<K: std::hash::Hash + Eq, V>(cache: &mut FxHashMap<K, V>, key: K, value: V) {
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(key, value);
}

/// Per top-level resource (methods/base.py ResourceState).
struct State<'a, 'p> {
    ops: u8,
    is_root: bool,
    root: &'a Json<'a>,
    root_type: &'a str,
    root_node: u32,
    compartment: &'p [Vec<String>],
    root_id_raw: Option<String>,
    root_id_written: Option<String>,
    offsets: [Option<i64>; 4],
    patient: Option<Option<String>>,
}

pub struct Walk<'p, 'a, 's> {
    plan: &'p Plan,
    session: &'s mut Session,
    context: &'p Context,
    pub out: &'s mut Vec<u8>,
    arena: &'a Bump,
    st: State<'a, 'p>,
    /// Where the current resource's own `meta` value was written.
    meta_at: Option<(usize, usize)>,
}

type Mark = (usize, bool);

#[inline]
fn member(out: &mut Vec<u8>, first: &mut bool, key: &str) -> Mark {
    let mark = (out.len(), *first);
    write::key(out, first, key);
    mark
}

#[inline]
fn rollback(out: &mut Vec<u8>, first: &mut bool, mark: Mark) {
    out.truncate(mark.0);
    *first = mark.1;
}

#[inline]
fn is_null(value: &Json) -> bool {
    matches!(value, Json::Null)
}

/// A list's items, or the value as a list of one.
#[inline]
fn items<'a>(value: &'a Json<'a>) -> &'a [Json<'a>] {
    match value {
        Json::Arr(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// The value of an element that does not repeat: a list gives its first item (Firely writes only
/// that one).
#[inline]
fn single<'a>(value: Option<&'a Json<'a>>) -> Option<&'a Json<'a>> {
    match value {
        Some(Json::Arr(items)) => items.first().filter(|v| !is_null(v)),
        Some(v) if !is_null(v) => Some(v),
        _ => None,
    }
}

impl<'p, 'a, 's> Walk<'p, 'a, 's> {
    /// Walk one top-level resource; its output is appended to `out`. Returns where its final
    /// `meta` was written (for the summary's label counts).
    pub fn resource_line(
        plan: &'p Plan,
        session: &'s mut Session,
        context: &'p Context,
        out: &'s mut Vec<u8>,
        arena: &'a Bump,
        resource: &'a Json<'a>,
        resource_type: &'a str,
        root: &'p Root,
    ) -> Walked<Option<(usize, usize)>> {
        let st = State {
            ops: 0,
            is_root: true,
            root: resource,
            root_type: resource_type,
            root_node: root.node,
            compartment: &root.compartment,
            root_id_raw: None,
            root_id_written: None,
            offsets: [None; 4],
            patient: None,
        };
        let mut walk = Walk { plan, session, context, out, arena, st, meta_at: None };
        walk.out.extend_from_slice(b"{\"resourceType\":");
        write::string(walk.out, resource_type);
        let mut first = false;
        walk.members(resource, root.node, &mut first, true)?;
        let ops = walk.st.ops;
        if ops != 0 {
            walk.labels(ops)?;
        }
        walk.out.push(b'}');
        Ok(walk.meta_at)
    }

    // -- objects -------------------------------------------------------------------------------
    fn object_value(&mut self, obj: &'a Json<'a>, node: u32) -> Walked<bool> {
        let start = self.out.len();
        self.out.push(b'{');
        let mut first = true;
        self.members(obj, node, &mut first, false)?;
        if first {
            self.out.truncate(start);
            return Ok(false);
        }
        self.out.push(b'}');
        Ok(true)
    }

    /// An object's members, in their input order (`Walk.object`).
    fn members(&mut self, obj: &'a Json<'a>, node_id: u32, first: &mut bool, resource_level: bool) -> Walked<()> {
        let Json::Obj(pairs) = obj else { return Err(FALLBACK) };
        let plan = self.plan;
        let node = plan.node(node_id).ok_or(MISSING)?;
        let has_shadow = pairs.iter().any(|(k, _)| k.starts_with('_'));
        for (index, (key, value)) in pairs.iter().enumerate() {
            let slot_id = *node.slots.get(*key).ok_or(MISSING)?;
            let slot = plan.slot(slot_id).ok_or(MISSING)?;
            match slot.kind {
                PRIMITIVE => self.primitive(pairs, index, value, slot, has_shadow, first)?,
                COMPLEX => {
                    let written = self.complex(key, value, slot, first)?;
                    if resource_level && *key == "meta" {
                        self.meta_at = written;
                    }
                }
                RESOURCE => self.nested(value, slot, first)?,
                _ => {} // resourceType (written first) and fhir_comments (dropped)
            }
        }
        Ok(())
    }

    /// An object rendered on its own (a primitive's `_x` in a list), or None when empty.
    fn render(&mut self, obj: &'a Json<'a>, node: u32) -> Walked<Option<Vec<u8>>> {
        let start = self.out.len();
        Ok(if self.object_value(obj, node)? { Some(self.out.split_off(start)) } else { None })
    }

    fn complex(&mut self, key: &str, value: &'a Json<'a>, slot: &'p Slot, first: &mut bool) -> Walked<Option<(usize, usize)>> {
        if slot.is_list {
            let mark = member(self.out, first, key);
            let start = self.out.len();
            self.out.push(b'[');
            let mut count = 0;
            for item in items(value) {
                if is_null(item) {
                    continue;
                }
                let item_mark = self.out.len();
                if count > 0 {
                    self.out.push(b',');
                }
                if self.complex_item(item, slot)? {
                    count += 1;
                } else {
                    self.out.truncate(item_mark);
                }
            }
            if count == 0 {
                rollback(self.out, first, mark);
                return Ok(None);
            }
            self.out.push(b']');
            return Ok(Some((start, self.out.len())));
        }
        let Some(item) = single(Some(value)) else { return Ok(None) };
        let mark = member(self.out, first, key);
        let start = self.out.len();
        if self.complex_item(item, slot)? {
            Ok(Some((start, self.out.len())))
        } else {
            rollback(self.out, first, mark);
            Ok(None)
        }
    }

    fn complex_item(&mut self, item: &'a Json<'a>, slot: &'p Slot) -> Walked<bool> {
        if slot.takes_whole || !matches!(item, Json::Obj(_)) {
            return Err(FALLBACK); // a method that takes the node whole, or not an object
        }
        self.object_value(item, slot.child)
    }

    // -- nested resources ----------------------------------------------------------------------
    fn nested(&mut self, value: &'a Json<'a>, slot: &'p Slot, first: &mut bool) -> Walked<()> {
        let mut written = 0;
        let mut mark = None;
        for item in items(value) {
            if is_null(item) {
                continue;
            }
            if written == 0 {
                mark = Some(member(self.out, first, &slot.main));
                if slot.is_list {
                    self.out.push(b'[');
                }
            } else if slot.is_list {
                self.out.push(b',');
            }
            if slot.is_list || written == 0 {
                self.resource(item, slot)?;
            } else {
                // Walked (its operations count for the container), but only the first is written.
                let start = self.out.len();
                self.resource(item, slot)?;
                self.out.truncate(start);
            }
            written += 1;
        }
        if mark.is_some() && slot.is_list {
            self.out.push(b']');
        }
        Ok(())
    }

    fn resource(&mut self, item: &'a Json<'a>, slot: &'p Slot) -> Walked<()> {
        let plan = self.plan;
        let resource_type = match item.get("resourceType") {
            Some(Json::Str(s)) if matches!(item, Json::Obj(_)) && plan.is_resource_type(s) => *s,
            _ => return Err(FALLBACK),
        };
        let claimed = match &slot.claims {
            None => None,
            Some(claims) => match claims.get(resource_type) {
                None => return Err(MISSING), // a type the export has not decided yet
                Some(&NONE) => None,
                Some(&node) => Some(node),
            },
        };
        let (node, labelled) = match claimed {
            Some(node) => (node, false), // a container's rule reached it: its content is the container's
            None => {
                let root = plan.roots.get(resource_type).ok_or(MISSING)?;
                if root.dynamic {
                    return Err(FALLBACK);
                }
                (root.node, !slot.contained)
            }
        };
        let (outer_ops, outer_is_root, outer_meta) = (self.st.ops, self.st.is_root, self.meta_at.take());
        self.st.ops = 0;
        self.st.is_root = false;
        self.out.extend_from_slice(b"{\"resourceType\":");
        write::string(self.out, resource_type);
        let mut first = false;
        self.members(item, node, &mut first, true)?;
        let ops = self.st.ops;
        if ops != 0 && labelled {
            self.labels(ops)?;
        }
        self.out.push(b'}');
        self.st.ops = outer_ops | ops;
        self.st.is_root = outer_is_root;
        self.meta_at = outer_meta;
        Ok(())
    }

    // -- primitives ----------------------------------------------------------------------------
    /// A primitive and its `_x` shadow, written at the first of the two keys (`Walk.primitive`).
    fn primitive(
        &mut self,
        pairs: &'a Pairs<'a>,
        index: usize,
        value: &'a Json<'a>,
        slot: &'p Slot,
        has_shadow: bool,
        first: &mut bool,
    ) -> Walked<()> {
        let (value, shadow) = if has_shadow {
            let partner = if slot.is_shadow { slot.main.as_str() } else { slot.shadow_key.as_str() };
            let found = pairs.iter().position(|(k, _)| *k == partner);
            if matches!(found, Some(at) if at < index) {
                return Ok(()); // written with its partner
            }
            let other = found.map(|at| &pairs[at].1);
            if slot.is_shadow {
                (other, Some(value))
            } else {
                (Some(value), other)
            }
        } else {
            (Some(value), None)
        };
        let value = value.filter(|v| !is_null(v));
        let shadow = shadow.filter(|v| !is_null(v));
        if slot.is_list {
            return self.primitive_list(value, shadow, slot, first);
        }
        let (value, shadow) = (single(value), single(shadow));
        if let Some(result) = self.primitive_value(value, slot)? {
            member(self.out, first, &slot.main);
            result.write(self.out);
        }
        if let Some(shadow) = shadow {
            let mark = member(self.out, first, &slot.shadow_key);
            if !self.object_value(shadow, slot.shadow)? {
                rollback(self.out, first, mark);
            }
        }
        Ok(())
    }

    fn primitive_list(&mut self, values: Option<&'a Json<'a>>, shadows: Option<&'a Json<'a>>, slot: &'p Slot, first: &mut bool) -> Walked<()> {
        let values: &'a [Json<'a>] = values.map_or(&[], items);
        let shadows: &'a [Json<'a>] = shadows.map_or(&[], items);
        if shadows.is_empty() {
            // No `_x`: the list is the values that stay, written as they come.
            let mark = member(self.out, first, &slot.main);
            self.out.push(b'[');
            let mut count = 0;
            for value in values {
                if let Some(result) = self.primitive_value(Some(value), slot)? {
                    if count > 0 {
                        self.out.push(b',');
                    }
                    result.write(self.out);
                    count += 1;
                }
            }
            if count == 0 {
                rollback(self.out, first, mark);
            } else {
                self.out.push(b']');
            }
            return Ok(());
        }
        let mut results: Vec<Option<Val<'a>>> = Vec::new();
        let mut extras: Vec<Option<Vec<u8>>> = Vec::new();
        for index in 0..values.len().max(shadows.len()) {
            let result = self.primitive_value(values.get(index), slot)?;
            let extra = match shadows.get(index) {
                Some(shadow) if !is_null(shadow) => self.render(shadow, slot.shadow)?,
                _ => None,
            };
            if result.is_some() || extra.is_some() {
                results.push(result);
                extras.push(extra);
            }
        }
        if results.iter().any(Option::is_some) {
            member(self.out, first, &slot.main);
            self.out.push(b'[');
            for (i, result) in results.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                match result {
                    Some(value) => value.write(self.out),
                    None => self.out.extend_from_slice(b"null"),
                }
            }
            self.out.push(b']');
        }
        if extras.iter().any(Option::is_some) {
            member(self.out, first, &slot.shadow_key);
            self.out.push(b'[');
            for (i, extra) in extras.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                match extra {
                    Some(bytes) => self.out.extend_from_slice(bytes),
                    None => self.out.extend_from_slice(b"null"),
                }
            }
            self.out.push(b']');
        }
        Ok(())
    }

    fn primitive_value(&mut self, value: Option<&'a Json<'a>>, slot: &'p Slot) -> Walked<Option<Val<'a>>> {
        let Some(value) = value.filter(|v| !is_null(v)) else { return Ok(None) };
        let Some(value) = normalize(value, slot.normalize, self.arena)? else { return Ok(None) };
        if matches!(slot.action, Action::None) {
            return Ok(Some(value));
        }
        if slot.records_root_id && self.st.is_root {
            let raw = value.text().into_owned();
            let result = self.apply(&slot.action, value)?;
            self.st.root_id_written = Some(result.as_ref().map_or(String::new(), |v| v.text().into_owned()));
            self.st.root_id_raw = Some(raw);
            return Ok(result);
        }
        self.apply(&slot.action, value)
    }

    // -- actions -------------------------------------------------------------------------------
    fn apply(&mut self, action: &'p Action, value: Val<'a>) -> Walked<Option<Val<'a>>> {
        let params = &self.plan.params;
        Ok(match action {
            Action::None => Some(value),
            Action::Drop => None,
            Action::Remove(op) => {
                self.st.ops |= op;
                None
            }
            Action::PartialDate { date_only } => {
                self.st.ops |= REDACT;
                let text = value.as_str()?;
                let parts = dates::reference_parts(text, *date_only);
                dates::redact_partial(parts.as_ref(), text, params.reference).map(Val::Str)
            }
            Action::PartialAge => {
                self.st.ops |= REDACT;
                let text = match &value {
                    Val::Int(i) => i.to_string(),
                    Val::Dec { source, token, .. } => python_str_of_decimal(source, *token).ok_or(FALLBACK)?,
                    _ => return Err(FALLBACK),
                };
                match redact::age_kept(&text) {
                    Some(true) => Some(value),
                    Some(false) => None,
                    None => return Err(FALLBACK), // not a whole number: the Python engine raises
                }
            }
            Action::PartialZip => {
                self.st.ops |= ABSTRACT;
                Some(Val::Str(self.arena.alloc_str(&redact::partial_zip(value.as_str()?, &params.restricted_zips))))
            }
            Action::Shift { date_only, id_rewritten } => {
                let text = value.as_str()?;
                self.shift(text, *date_only, *id_rewritten)?.map(Val::Str)
            }
            Action::Hash => {
                self.st.ops |= CRYPTOHASH;
                Some(Val::Str(self.hash(&value.text())))
            }
            Action::HashReference => {
                self.st.ops |= CRYPTOHASH;
                Some(Val::Str(self.hash_reference(value.as_str()?)))
            }
            Action::Encrypt => {
                self.st.ops |= ENCRYPT;
                let iv = self.session.ivs.next().ok_or(FALLBACK)?;
                let text = encrypt::encrypt(&value.text(), &params.encrypt_key, &iv).ok_or(FALLBACK)?;
                Some(Val::Str(self.arena.alloc_str(&text)))
            }
            Action::Substitute(text) => {
                self.st.ops |= SUBSTITUTE;
                text.as_ref().map(|t| Val::Str(self.arena.alloc_str(t)))
            }
            Action::Fallback => return Err(FALLBACK),
        })
    }

    fn hash(&mut self, text: &str) -> &'a str {
        if text.is_empty() {
            return "";
        }
        let hex = match self.session.hashes.get(text) {
            Some(found) => *found,
            None => {
                let found = cryptohash::hex(&self.plan.params.hash_mac, text);
                remember(&mut self.session.hashes, text.into(), found);
                found
            }
        };
        // SAFETY: hex digits are ASCII
        self.arena.alloc_str(unsafe { std::str::from_utf8_unchecked(&hex) })
    }

    fn hash_reference(&mut self, reference: &str) -> &'a str {
        if let Some(found) = self.session.references.get(reference) {
            return self.arena.alloc_str(found);
        }
        let plan = self.plan;
        let found = cryptohash::transform_reference(
            reference,
            &plan.literal_reference,
            |t| plan.is_resource_type(t),
            |id| self.hash(id).to_string(),
        );
        let written = self.arena.alloc_str(&found);
        remember(&mut self.session.references, reference.to_string(), found);
        written
    }

    // -- dateShift -----------------------------------------------------------------------------
    fn shift(&mut self, text: &'a str, date_only: bool, id_rewritten: bool) -> Walked<Option<&'a str>> {
        let decision = 2 * id_rewritten as usize + self.st.is_root as usize;
        let days = match self.st.offsets[decision] {
            Some(days) => days,
            None => {
                let days = self.offset_for(id_rewritten)?;
                self.st.offsets[decision] = Some(days);
                days
            }
        };
        let params = &self.plan.params;
        let parts = dates::reference_parts(text, date_only);
        if let Some(p) = &parts {
            if let (Some(month_text), Some(day_text)) = (p.month, p.day) {
                let year: i64 = p.year.parse().map_err(|_| FALLBACK)?;
                let month: i64 = month_text.parse().map_err(|_| FALLBACK)?;
                let day: i64 = day_text.parse().map_err(|_| FALLBACK)?;
                if !dates::older_than_limit(params.reference, year, month, day) {
                    if !dates::valid_calendar(p.year, Some(month_text), Some(day_text)) {
                        return Err(FALLBACK);
                    }
                    // outside years 1..9999 Python raises (an internal error it reports itself)
                    let mut shifted = dates::day_text(dates::ordinal(year, month, day) + days).ok_or(FALLBACK)?;
                    if !date_only {
                        if let Some(time) = p.time {
                            shifted.push_str(&dates::zero_time(time));
                        }
                    }
                    self.st.ops |= PERTURB;
                    return Ok(Some(self.arena.alloc_str(&shifted)));
                }
            }
        }
        self.st.ops |= REDACT;
        Ok(if params.partial_dates { dates::redact_partial(parts.as_ref(), text, params.reference) } else { None })
    }

    fn offset_for(&mut self, id_rewritten: bool) -> Walked<i64> {
        let params = &self.plan.params;
        if let Some(days) = params.fixed_offset {
            return Ok(days);
        }
        if params.scope == Scope::Patient {
            if let Some(patient) = self.patient_id() {
                return dateshift::patient_offset(&params.shift_mac, &patient, params.shift_range).ok_or(FALLBACK);
            }
        }
        let context = self.context;
        let mut prefix: String = match params.scope {
            Scope::File => context.file.clone(),
            Scope::Folder => context.folder.clone(),
            _ => String::new(),
        };
        if prefix.is_empty() {
            prefix = if id_rewritten || !self.st.is_root { self.root_id_out()? } else { self.root_id()? };
        }
        Ok(dateshift::offset(&prefix, &params.shift_key))
    }

    fn id_slot(&self) -> Walked<&'p Slot> {
        let plan = self.plan;
        let node = plan.node(self.st.root_node).ok_or(MISSING)?;
        let id = *node.slots.get("id").ok_or(MISSING)?;
        plan.slot(id).ok_or(MISSING)
    }

    /// The root's id as written (normalised as the parser reads it).
    fn root_id(&mut self) -> Walked<String> {
        if let Some(found) = &self.st.root_id_raw {
            return Ok(found.clone());
        }
        let found = match self.st.root.get("id") {
            None | Some(Json::Null) => String::new(),
            Some(raw) => {
                let slot = self.id_slot()?;
                normalize(raw, slot.normalize, self.arena)?.map_or(String::new(), |v| v.text().into_owned())
            }
        };
        self.st.root_id_raw = Some(found.clone());
        Ok(found)
    }

    /// The root's id as the rules leave it (its action runs, recording its operation, as the
    /// Python engine's `root_id_out` does).
    fn root_id_out(&mut self) -> Walked<String> {
        if let Some(found) = &self.st.root_id_written {
            return Ok(found.clone());
        }
        let value = self.root_id()?;
        let slot = self.id_slot()?;
        let written = if value.is_empty() {
            String::new()
        } else {
            let value = self.arena.alloc_str(&value);
            match self.apply(&slot.action, Val::Str(value))? {
                Some(v) => v.text().into_owned(),
                None => String::new(),
            }
        };
        self.st.root_id_written = Some(written.clone());
        Ok(written)
    }

    fn patient_id(&mut self) -> Option<String> {
        if self.st.patient.is_none() {
            self.st.patient = Some(patient_id_of(self.st.root, self.st.root_type, self.st.compartment));
        }
        self.st.patient.clone().flatten()
    }

    // -- security labels -----------------------------------------------------------------------
    /// add_security_labels (labels.py): the labels of the operations appended to `meta.security`
    /// (a new `meta` last when there was none), `meta` rebuilt in the reference's key order.
    fn labels(&mut self, ops: u8) -> Walked<()> {
        match self.meta_at {
            None => {
                self.out.extend_from_slice(b",\"meta\":");
                let start = self.out.len();
                self.out.extend_from_slice(b"{\"security\":[");
                let mut first = true;
                for (bit, _, coding) in LABELS {
                    if ops & bit != 0 {
                        if !first {
                            self.out.push(b',');
                        }
                        first = false;
                        self.out.extend_from_slice(coding.as_bytes());
                    }
                }
                self.out.extend_from_slice(b"]}");
                self.meta_at = Some((start, self.out.len()));
            }
            Some((start, end)) => {
                self.session.scratch.reset();
                let rebuilt = rebuild_meta(&self.out[start..end], ops, &self.session.scratch)?;
                let length = rebuilt.len();
                self.out.splice(start..end, rebuilt.iter().copied());
                self.meta_at = Some((start, start + length));
            }
        }
        Ok(())
    }
}

// -- reading primitives (r4/primitives.py) ---------------------------------------------------------
/// .NET's String.Trim() set (char.IsWhiteSpace).
const NET_WHITESPACE: &[char] = &[
    '\t', '\n', '\u{b}', '\u{c}', '\r', ' ', '\u{85}', '\u{a0}', '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}',
    '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}',
    '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

#[inline]
fn trim_net(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&a), Some(&b)) if a > b' ' && a < 0x80 && b > b' ' && b < 0x80 => text,
        _ => text.trim_matches(NET_WHITESPACE),
    }
}

fn normalize<'a>(value: &'a Json<'a>, how: Normalize, arena: &'a Bump) -> Walked<Option<Val<'a>>> {
    let text = |value: &'a Json<'a>| -> Walked<Option<&'a str>> {
        match value {
            Json::Str(s) => {
                let t = trim_net(s);
                Ok(if t.is_empty() { None } else { Some(t) })
            }
            _ => Err(FALLBACK),
        }
    };
    Ok(match how {
        Normalize::Str => text(value)?.map(Val::Str),
        Normalize::Bool => match value {
            Json::Bool(b) => Some(Val::Bool(*b)),
            Json::Str(_) => match text(value)? {
                None => None,
                Some("true") => Some(Val::Bool(true)),
                Some("false") => Some(Val::Bool(false)),
                Some(_) => return Err(FALLBACK),
            },
            _ => return Err(FALLBACK),
        },
        Normalize::Int => match value {
            Json::Num(token) if numbers::is_integer_token(token) => Some(Val::Int(int32(token, false)?)),
            Json::Str(_) => match text(value)? {
                None => None,
                Some(t) => Some(Val::Int(int32(t, true)?)),
            },
            _ => return Err(FALLBACK),
        },
        Normalize::Dec => match value {
            Json::Num(token) => Some(Val::Dec { text: decimal_token_text(token, arena), source: token, token: true }),
            Json::Str(_) => match text(value)? {
                None => None,
                Some(t) => {
                    if !is_decimal_text(t) {
                        return Err(FALLBACK);
                    }
                    let number = numbers::parse(t).ok_or(FALLBACK)?;
                    if numbers::exact_plain_digits(t) > crate::MAX_NUMBER_DIGITS {
                        return Err(FALLBACK);
                    }
                    Some(Val::Dec { text: arena.alloc_str(&numbers::decimal_text(&number)), source: t, token: false })
                }
            },
            _ => return Err(FALLBACK),
        },
        Normalize::Date | Normalize::DateTime => match text(value)? {
            None => None,
            Some(t) => {
                let pattern = if how == Normalize::Date { &dates::DATE_RE } else { &dates::DATETIME_RE };
                if !calendar_text(t, pattern, how == Normalize::Date) {
                    return Err(FALLBACK);
                }
                Some(Val::Str(t))
            }
        },
        Normalize::Time => match text(value)? {
            None => None,
            Some(t) => {
                if !dates::TIME_RE.is_match(t) {
                    return Err(FALLBACK);
                }
                Some(Val::Str(t))
            }
        },
        Normalize::Raw => return Err(FALLBACK),
    })
}

/// A date or dateTime the parser admits: its pattern, and a calendar day when the day is past 28.
fn calendar_text(text: &str, pattern: &regex::Regex, date_only: bool) -> bool {
    if dates::usual_shape(text, date_only).is_none() && !pattern.is_match(text) {
        return false;
    }
    let b = text.as_bytes();
    // The pattern holds: a day, if any, is at 8..10 (an offset's hours never pass 14).
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && &text[8..10] >= "29" {
        return dates::valid_calendar(&text[0..4], Some(&text[5..7]), Some(&text[8..10]));
    }
    true
}

/// An integer within 32 bits: a JSON integer token, or a string `[+-]?\d+`.
fn int32(text: &str, signed_string: bool) -> Walked<i64> {
    let digits = if signed_string { text.strip_prefix(['+', '-']).unwrap_or(text) } else { text.strip_prefix('-').unwrap_or(text) };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FALLBACK);
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return Err(FALLBACK);
    }
    let magnitude: i64 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| FALLBACK)? };
    let number = if text.starts_with('-') { -magnitude } else { magnitude };
    if number < i32::MIN as i64 || number > i32::MAX as i64 {
        return Err(FALLBACK);
    }
    Ok(number)
}

fn decimal_token_text<'a>(token: &'a str, arena: &'a Bump) -> &'a str {
    if numbers::is_integer_token(token) {
        numbers::integer_token_text(token)
    } else if token.bytes().any(|b| b == b'e' || b == b'E') {
        arena.alloc_str(&numbers::decimal_token_text(token))
    } else {
        token
    }
}

/// `-?\d+(\.\d+)?([eE][+-]?\d+)?` (ASCII digits).
fn is_decimal_text(text: &str) -> bool {
    let b = text.as_bytes();
    let mut at = usize::from(b.first() == Some(&b'-'));
    let digits = |at: &mut usize| {
        let start = *at;
        while *at < b.len() && b[*at].is_ascii_digit() {
            *at += 1;
        }
        *at > start
    };
    if !digits(&mut at) {
        return false;
    }
    if at < b.len() && b[at] == b'.' {
        at += 1;
        if !digits(&mut at) {
            return false;
        }
    }
    if at < b.len() && (b[at] == b'e' || b[at] == b'E') {
        at += 1;
        if at < b.len() && (b[at] == b'+' || b[at] == b'-') {
            at += 1;
        }
        if !digits(&mut at) {
            return false;
        }
    }
    at == b.len()
}

/// `str(value)` of a decimal as the Python engine holds it: an int for integer tokens, else a
/// Decimal (a float's repr is never a whole number's digits, so Decimal's text decides the same).
fn python_str_of_decimal(source: &str, token: bool) -> Option<String> {
    if token && numbers::is_integer_token(source) {
        return Some(numbers::integer_token_text(source).to_string());
    }
    numbers::parse(source).map(|d| numbers::to_sci_string(&d))
}

// -- the patient scope (r4/compartment.py) ---------------------------------------------------------
/// Python's str.strip() set (str.isspace).
const PY_WHITESPACE: &[char] = &[
    '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}', ' ', '\u{85}', '\u{a0}', '\u{1680}',
    '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}', '\u{2008}',
    '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}',
];

fn patient_id_of(resource: &Json, resource_type: &str, paths: &[Vec<String>]) -> Option<String> {
    if resource_type == "Patient" {
        return match resource.get("id") {
            Some(Json::Str(s)) if !s.trim_matches(PY_WHITESPACE).is_empty() => Some(s.trim_matches(PY_WHITESPACE).to_string()),
            _ => None,
        };
    }
    for steps in paths {
        let mut found = Vec::new();
        references(resource, steps, &mut found);
        for reference in found {
            let reference = reference.trim_matches(PY_WHITESPACE);
            if reference.starts_with("urn:uuid:") {
                continue;
            }
            let parts: Vec<&str> = reference.split('/').collect();
            let n = parts.len();
            if n >= 2 && parts[n - 2] == "Patient" && !parts[n - 1].is_empty() {
                return Some(parts[n - 1].to_string());
            }
            if n >= 4 && parts[n - 4] == "Patient" && parts[n - 2] == "_history" {
                return Some(parts[n - 3].to_string());
            }
        }
    }
    None
}

fn references<'a>(value: &Json<'a>, steps: &[String], found: &mut Vec<&'a str>) {
    match value {
        Json::Arr(items) => {
            for item in items.iter() {
                references(item, steps, found);
            }
        }
        Json::Obj(pairs) => {
            let Some((head, rest)) = steps.split_first() else {
                if let Some(Json::Str(reference)) = value.get("reference") {
                    found.push(reference);
                }
                return;
            };
            for (key, child) in pairs.iter() {
                let matches = key == head
                    || (key.starts_with(head.as_str()) && key[head.len()..].chars().next().is_some_and(char::is_uppercase));
                if matches {
                    references(child, rest, found);
                }
            }
        }
        _ => {}
    }
}

// -- minimumNecessary's elements (minimum.py `_prune`) ----------------------------------------------
/// The value with only the allowed elements (the pruned resource starts with its resourceType).
pub fn prune<'a>(value: &Json<'a>, tree: &Prune, root: bool, arena: &'a Bump) -> Json<'a> {
    match value {
        Json::Arr(items) => {
            let pruned = BumpVec::from_iter_in(items.iter().map(|item| prune(item, tree, false, arena)), arena);
            Json::Arr(pruned.into_bump_slice())
        }
        Json::Obj(pairs) => {
            let mut kept: BumpVec<'a, (&'a str, Json<'a>)> = BumpVec::with_capacity_in(pairs.len(), arena);
            if root {
                if let Some(pair) = pairs.iter().find(|(k, _)| *k == "resourceType") {
                    kept.push(*pair);
                }
            }
            for (key, child) in pairs.iter() {
                match tree.keys.get(*key) {
                    None => {}
                    Some(None) => kept.push((key, *child)),
                    Some(Some(below)) => kept.push((key, prune(child, below, false, arena))),
                }
            }
            Json::Obj(kept.into_bump_slice())
        }
        other => *other,
    }
}

// -- labels (labels.py) ------------------------------------------------------------------------------
const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// (operation, code, coding as written), in the order the reference appends them.
pub static LABELS: [(u8, &str, &str); 6] = [
    (REDACT, "REDACTED", concat!(r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"REDACTED","display":"redacted"}"#)),
    (ABSTRACT, "ABSTRED", r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"ABSTRED","display":"abstracted"}"#),
    (CRYPTOHASH, "CRYTOHASH", r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"CRYTOHASH","display":"cryptographic hash function"}"#),
    (ENCRYPT, "MASKED", r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"MASKED","display":"masked"}"#),
    (PERTURB, "PERTURBED", r#"{"code":"PERTURBED","display":"exact value is replaced with another exact value"}"#),
    (SUBSTITUTE, "SUBSTITUTED", r#"{"code":"SUBSTITUTED","display":"exact value is replaced with a predefined value"}"#),
];

/// The codes the summary counts (labels.py LABELS, GENERALIZED included).
/// Per label code (LABEL_CODES), how many a resource's labels hold.
pub type LabelCounts = [u32; LABEL_CODES.len()];

pub const LABEL_CODES: [&str; 7] =
    ["REDACTED", "ABSTRED", "CRYTOHASH", "MASKED", "PERTURBED", "SUBSTITUTED", "GENERALIZED"];

/// meta's keys in the reference's order, each before its `_x`.
const META_ORDER: [&str; 16] = [
    "id", "_id", "extension", "_extension", "versionId", "_versionId", "lastUpdated", "_lastUpdated", "source",
    "_source", "profile", "_profile", "security", "_security", "tag", "_tag",
];

fn rebuild_meta<'b>(written: &[u8], ops: u8, arena: &'b Bump) -> Walked<BumpVec<'b, u8>> {
    let _ = V3;
    let parsed = json::parse(written, arena).map_err(|_| FALLBACK)?;
    let Json::Obj(pairs) = &parsed.value else { return Err(FALLBACK) };
    let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    // the security list: what the walk wrote, then the labels whose code is not there yet
    let mut security = BumpVec::with_capacity_in(256, arena);
    security.push(b'[');
    let mut present: Vec<String> = Vec::new();
    let mut count = 0;
    if let Some(existing) = get("security") {
        let Json::Arr(codings) = existing else { return Err(FALLBACK) };
        for coding in codings.iter() {
            if count > 0 {
                security.push(b',');
            }
            write_json(&mut security, coding);
            count += 1;
            if let Json::Obj(_) = coding {
                match coding.get("code") {
                    None => present.push(String::new()),
                    Some(Json::Str(code)) => present.push(code.to_lowercase()),
                    Some(_) => return Err(FALLBACK),
                }
            }
        }
    }
    for (bit, code, coding) in LABELS {
        if ops & bit != 0 && !present.contains(&code.to_lowercase()) {
            if count > 0 {
                security.push(b',');
            }
            security.extend_from_slice(coding.as_bytes());
            count += 1;
        }
    }
    security.push(b']');
    let mut out = BumpVec::with_capacity_in(written.len() + security.len(), arena);
    out.push(b'{');
    let mut first = true;
    for key in META_ORDER {
        {
            if key == "security" {
                write::key(&mut out, &mut first, key);
                out.extend_from_slice(&security);
            } else if let Some(value) = get(key) {
                write::key(&mut out, &mut first, key);
                if key == "lastUpdated" {
                    let Json::Str(text) = value else { return Err(FALLBACK) };
                    // not an instant any more: the Python engine fails the run, as the reference does
                    let formatted = format_last_updated(text).ok_or(FALLBACK)?;
                    write::string(&mut out, &formatted);
                } else {
                    write_json(&mut out, value);
                }
            }
        }
    }
    out.push(b'}');
    Ok(out)
}

/// `yyyy-MM-ddTHH:mm:ss[.FFFFFFF]zzz`, as .NET's DateTimeOffset prints it.
fn format_last_updated(value: &str) -> Option<String> {
    let m = dates::INSTANT.captures(value)?;
    let part = |i: usize, default: &'static str| m.get(i).map_or(default, |g| g.as_str());
    let mut text = format!(
        "{}-{}-{}T{}:{}:{}",
        &m[1],
        part(2, "01"),
        part(3, "01"),
        part(4, "00"),
        part(5, "00"),
        part(6, "00")
    );
    let fraction = m.get(7).map_or("", |g| g.as_str());
    let fraction = &fraction[..fraction.len().min(7)];
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    match m.get(8).map(|g| g.as_str()) {
        None | Some("Z") => text.push_str("+00:00"),
        Some(offset) => text.push_str(offset),
    }
    Some(text)
}

/// How many of each label code (LABEL_CODES) a written `meta`'s security list holds.
pub fn label_codes(meta: &[u8], arena: &Bump) -> LabelCounts {
    let mut counts = [0; LABEL_CODES.len()];
    if memchr::memmem::find(meta, b"\"security\"").is_none() {
        return counts;
    }
    let Ok(parsed) = json::parse(meta, arena) else { return counts };
    let Some(Json::Arr(codings)) = parsed.value.get("security") else { return counts };
    for coding in codings.iter() {
        if let Some(Json::Str(code)) = coding.get("code") {
            if let Some(at) = LABEL_CODES.iter().position(|c| c == code) {
                counts[at] += 1;
            }
        }
    }
    counts
}

pub fn write_json<O: write::Out>(out: &mut O, value: &Json) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Num(text) => out.extend_from_slice(text.as_bytes()),
        Json::Str(text) => write::string(out, text),
        Json::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Json::Obj(pairs) => {
            out.push(b'{');
            let mut first = true;
            for (key, item) in pairs.iter() {
                write::key(out, &mut first, key);
                write_json(out, item);
            }
            out.push(b'}');
        }
    }
}
