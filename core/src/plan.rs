//! The compiled plan, as the Python engine exports it (anonymizer/core.py): for each plan node its
//! slots by JSON key, each slot's decision (how its value is read, which action applies, which node
//! its children follow), and for each resource type its root. The Python plan is built lazily; the
//! export grows with it, so a slot may be missing here: the walk then hands the line back to
//! Python (a fallback), which builds it, and the next export brings it.

use rustc_hash::{FxHashMap, FxHashSet};

pub const PRIMITIVE: i8 = 0;
pub const COMPLEX: i8 = 1;
pub const RESOURCE: i8 = 2;
pub const NONE: u32 = u32::MAX;

// Label operations (one bit each, as methods/base.py).
pub const REDACT: u8 = 1;
pub const ABSTRACT: u8 = 2;
pub const CRYPTOHASH: u8 = 4;
pub const ENCRYPT: u8 = 8;
pub const PERTURB: u8 = 16;
pub const SUBSTITUTE: u8 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    Str,
    Bool,
    Int,
    Dec,
    Date,
    DateTime,
    Time,
    Raw, // not a primitive
}

impl Normalize {
    pub fn of(type_name: &str) -> Normalize {
        match type_name {
            "base64Binary" | "canonical" | "code" | "id" | "markdown" | "oid" | "string" | "uri" | "url"
            | "uuid" | "xhtml" => Normalize::Str,
            "boolean" => Normalize::Bool,
            "integer" | "positiveInt" | "unsignedInt" => Normalize::Int,
            "decimal" => Normalize::Dec,
            "date" => Normalize::Date,
            "dateTime" | "instant" => Normalize::DateTime,
            "time" => Normalize::Time,
            _ => Normalize::Raw,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Action {
    None,
    Drop,        // the node belongs to a rule that removes it (records nothing)
    Remove(u8),  // removed, recording the operation
    PartialDate { date_only: bool },
    PartialAge,
    PartialZip,
    Shift { date_only: bool, id_rewritten: bool },
    Hash,
    HashReference,
    Encrypt,
    Substitute(Option<String>),
    Fallback, // a method the core does not run (perturb, generalize, another)
}

#[derive(Debug)]
pub struct Slot {
    pub kind: i8,
    pub main: String,       // the element's JSON key (`birthDate`)
    pub shadow_key: String, // `_birthDate`
    pub is_list: bool,
    pub is_shadow: bool, // the slot of the `_x` key
    pub normalize: Normalize,
    pub action: Action,
    pub child: u32,
    pub shadow: u32,
    /// A method takes the node whole (substitute, perturb): the Python engine walks it.
    pub takes_whole: bool,
    /// A resource's `id` whose action records the root's id before and after it (plan.py
    /// `recording_root_id`).
    pub records_root_id: bool,
    pub contained: bool, // a nested resource slot named `contained` (its labels are the container's)
    /// Nested resources: None when no container rule can reach them; else, by their type, the
    /// claimed plan node (NONE: not claimed); a type not listed yet falls back.
    pub claims: Option<FxHashMap<String, u32>>,
}

#[derive(Debug, Default)]
pub struct Node {
    pub slots: FxHashMap<String, u32>,
}

/// minimumNecessary's elements of a type, by JSON key: kept whole, or pruned below.
#[derive(Debug, Default)]
pub struct Prune {
    pub keys: FxHashMap<String, Option<Prune>>,
}

#[derive(Debug)]
pub struct Root {
    pub node: u32,
    pub dynamic: bool, // rules the core cannot decide (FHIRPath): the Python engine walks it
    pub prune: Option<Prune>,
    pub compartment: Vec<Vec<String>>, // the patient scope's reference paths, in order
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Resource,
    File,
    Folder,
    Patient,
}

pub struct Params {
    pub reference: crate::dates::Day,
    pub partial_dates: bool,
    pub restricted_zips: Vec<String>,
    pub scope: Scope,
    pub fixed_offset: Option<i64>,
    pub shift_range: i64,
    pub shift_key: Vec<u8>,
    pub shift_mac: crate::methods::cryptohash::HmacSha256,
    pub hash_mac: crate::methods::cryptohash::HmacSha256,
    pub encrypt_key: Vec<u8>,
    /// minimumNecessary's resourceTypes (None: every type may leave, or no minimumNecessary)
    pub listed: Option<FxHashSet<String>>,
    /// minimumNecessary's filters: their types are the Python engine's (FHIRPath per resource)
    pub filtered: FxHashSet<String>,
}

pub struct Plan {
    pub params: Params,
    pub resource_types: FxHashSet<String>,
    pub literal_reference: regex::Regex,
    pub nodes: Vec<Option<Node>>,
    pub slots: Vec<Option<Slot>>,
    pub roots: FxHashMap<String, Root>,
}

impl Plan {
    #[inline]
    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.get(id as usize).and_then(|n| n.as_ref())
    }

    #[inline]
    pub fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.contains(name)
    }
}
