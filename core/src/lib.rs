//! anonymizer._core: the compiled core of fhir-anonymize. One entry point, `process`, takes the
//! compiled plan (exported from the Python engine's immutable plan by anonymizer/core.py) and a
//! block of NDJSON lines, and returns the anonymized lines with the block's counts, faults and the
//! lines it hands back to the Python engine (fallbacks), with the GIL released.

use std::sync::RwLock;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use rustc_hash::{FxHashMap, FxHashSet};

mod block;
mod dates;
mod json;
mod methods;
mod numbers;
mod plan;
mod walk;
mod write;

use plan::{Action, Node, Params, Plan, Prune, Root, Scope, Slot, NONE};

/// The engine's limits (anonymizer/jsonio.py).
pub const MAX_DEPTH: usize = 128;
pub const MAX_NUMBER_DIGITS: usize = 1000;

#[pyclass(frozen, name = "Plan", module = "anonymizer._core")]
struct PyPlan {
    inner: RwLock<Plan>,
}

fn bad(message: &str) -> PyErr {
    PyValueError::new_err(message.to_string())
}

fn item<'py, T: FromPyObject<'py>>(t: &Bound<'py, PyTuple>, i: usize) -> PyResult<T> {
    t.get_item(i)?.extract()
}

fn action_of(spec: &Bound<'_, PyTuple>) -> PyResult<Action> {
    let name: String = item(spec, 0)?;
    Ok(match name.as_str() {
        "none" => Action::None,
        "drop" => Action::Drop,
        "remove" => Action::Remove(item(spec, 1)?),
        "partial_date" => Action::PartialDate { date_only: item(spec, 1)? },
        "partial_age" => Action::PartialAge,
        "partial_zip" => Action::PartialZip,
        "shift" => Action::Shift { date_only: item(spec, 1)?, id_rewritten: item(spec, 2)? },
        "hash" => Action::Hash,
        "hash_reference" => Action::HashReference,
        "encrypt" => Action::Encrypt,
        "substitute" => Action::Substitute(item(spec, 1)?),
        _ => Action::Fallback,
    })
}

fn prune_of(tree: &Bound<'_, PyDict>) -> PyResult<Prune> {
    let mut keys = FxHashMap::default();
    for (key, below) in tree.iter() {
        let key: String = key.extract()?;
        let below = if below.is_none() { None } else { Some(prune_of(below.downcast::<PyDict>()?)?) };
        keys.insert(key, below);
    }
    Ok(Prune { keys })
}

fn grow<T>(items: &mut Vec<Option<T>>, id: u32) -> &mut Option<T> {
    let at = id as usize;
    if items.len() <= at {
        items.resize_with(at + 1, || None);
    }
    &mut items[at]
}

#[pymethods]
impl PyPlan {
    /// `params`: reference_date (y, m, d), partial_dates, restricted_zips, scope, fixed_offset,
    /// shift_range, and the keys (shift_key, hash_key, encrypt_key), listed (minimumNecessary's
    /// resourceTypes or None), filtered (the types minimumNecessary's filters decide).
    #[new]
    fn new(resource_types: Vec<String>, params: &Bound<'_, PyDict>) -> PyResult<Self> {
        let get = |key: &str| -> PyResult<Bound<'_, PyAny>> {
            params.get_item(key)?.ok_or_else(|| bad(&format!("plan parameter {key} missing")))
        };
        let (year, month, day): (i64, i64, i64) = get("reference_date")?.extract()?;
        let scope = match get("scope")?.extract::<String>()?.as_str() {
            "resource" => Scope::Resource,
            "file" => Scope::File,
            "folder" => Scope::Folder,
            "patient" => Scope::Patient,
            _ => return Err(bad("unknown date-shift scope")),
        };
        let shift_key: String = get("shift_key")?.extract()?;
        let hash_key: String = get("hash_key")?.extract()?;
        let encrypt_key: String = get("encrypt_key")?.extract()?;
        let listed: Option<Vec<String>> = get("listed")?.extract()?;
        let params = Params {
            reference: dates::Day { year, month, day },
            partial_dates: get("partial_dates")?.extract()?,
            restricted_zips: get("restricted_zips")?.extract()?,
            scope,
            fixed_offset: get("fixed_offset")?.extract()?,
            shift_range: get("shift_range")?.extract()?,
            shift_mac: methods::cryptohash::prepared(shift_key.as_bytes()),
            shift_key: shift_key.into_bytes(),
            hash_mac: methods::cryptohash::prepared(hash_key.as_bytes()),
            encrypt_key: encrypt_key.into_bytes(),
            listed: listed.map(|types| types.into_iter().collect()),
            filtered: get("filtered")?.extract::<Vec<String>>()?.into_iter().collect(),
        };
        let literal_reference = methods::cryptohash::literal_reference(&resource_types);
        let plan = Plan {
            params,
            resource_types: resource_types.into_iter().collect::<FxHashSet<_>>(),
            literal_reference,
            nodes: Vec::new(),
            slots: Vec::new(),
            roots: FxHashMap::default(),
        };
        Ok(PyPlan { inner: RwLock::new(plan) })
    }

    /// Add what the Python plan built since the last export (anonymizer/core.py `PlanExport`):
    /// node ids; slots (id, node, key, kind, main, is_list, is_shadow, normalize,
    /// action, child, shadow, takes_node_whole, records_root_id, contained, has_claims); roots
    /// (resource type, node, dynamic, prune, compartment); claims (nested slot, resource
    /// type, claimed node or -1).
    fn add(
        &self,
        py: Python<'_>,
        nodes: Vec<u32>,
        slots: Vec<Bound<'_, PyTuple>>,
        roots: Vec<Bound<'_, PyTuple>>,
        claims: Vec<(u32, String, i64)>,
    ) -> PyResult<()> {
        let mut new_slots = Vec::with_capacity(slots.len());
        for t in &slots {
            let id: u32 = item(t, 0)?;
            let node: u32 = item(t, 1)?;
            let key: String = item(t, 2)?;
            let main: String = item(t, 4)?;
            let normalize: String = item(t, 7)?;
            let takes_whole: bool = item(t, 11)?;
            let has_claims: bool = item(t, 14)?;
            let slot = Slot {
                kind: item(t, 3)?,
                shadow_key: format!("_{main}"),
                main,
                is_list: item(t, 5)?,
                is_shadow: item(t, 6)?,
                normalize: plan::Normalize::of(&normalize),
                action: action_of(t.get_item(8)?.downcast::<PyTuple>()?)?,
                child: item::<Option<u32>>(t, 9)?.unwrap_or(NONE),
                shadow: item::<Option<u32>>(t, 10)?.unwrap_or(NONE),
                takes_whole,
                records_root_id: item(t, 12)?,
                contained: item(t, 13)?,
                claims: if has_claims { Some(FxHashMap::default()) } else { None },
            };
            new_slots.push((id, node, key, slot));
        }
        let mut new_roots = Vec::with_capacity(roots.len());
        for t in &roots {
            let resource_type: String = item(t, 0)?;
            let prune = t.get_item(3)?;
            let prune = if prune.is_none() { None } else { Some(prune_of(prune.downcast::<PyDict>()?)?) };
            let root = Root {
                node: item(t, 1)?,
                dynamic: item(t, 2)?,
                prune,
                compartment: item(t, 4)?,
            };
            new_roots.push((resource_type, root));
        }
        py.allow_threads(|| {
            let mut plan = self.inner.write().map_err(|_| "the plan's lock is poisoned")?;
            for id in nodes {
                grow(&mut plan.nodes, id).get_or_insert_with(Node::default);
            }
            for (id, node, key, slot) in new_slots {
                *grow(&mut plan.slots, id) = Some(slot);
                let owner = plan.nodes.get_mut(node as usize).and_then(Option::as_mut).ok_or("a slot of an unknown node")?;
                owner.slots.insert(key, id);
            }
            for (resource_type, root) in new_roots {
                plan.roots.insert(resource_type, root);
            }
            for (slot, resource_type, node) in claims {
                let nested = plan.slots.get_mut(slot as usize).and_then(Option::as_mut).ok_or("a claim of an unknown slot")?;
                if let Some(map) = nested.claims.as_mut() {
                    map.insert(resource_type, if node < 0 { NONE } else { node as u32 });
                }
            }
            Ok::<(), &str>(())
        })
        .map_err(bad)
    }

    /// How much the plan holds: (nodes, slots, roots).
    fn size(&self) -> PyResult<(usize, usize, usize)> {
        let plan = self.inner.read().map_err(|_| bad("the plan's lock is poisoned"))?;
        Ok((plan.nodes.iter().flatten().count(), plan.slots.iter().flatten().count(), plan.roots.len()))
    }
}

/// What one thread keeps between blocks (recent hashes, random bytes); one per thread.
#[pyclass(frozen, name = "Session", module = "anonymizer._core")]
struct PySession {
    inner: std::sync::Mutex<walk::Session>, // one per thread: never contended
}

#[pymethods]
impl PySession {
    #[new]
    fn new() -> Self {
        PySession { inner: std::sync::Mutex::new(walk::Session::default()) }
    }
}

/// Anonymize pieces of NDJSON: each piece (data, start, end) the lines of `data[start:end]` (each
/// with its newline, a last one perhaps without, as the line splitter leaves them), each with its
/// session (as many sessions as pieces), shared out by `threads` threads, the GIL released. Returns for each piece (out, events, counts): `out` the lines the core wrote;
/// `events` (index, kind, value, line start, line end) for the lines it did not write, in order:
/// ("fallback" or "missing", position in out: the Python engine processes the line; "missing": it
/// needed a part of the plan not exported yet), ("fault", kind), ("dropped", resource type);
/// `counts` a dict: lines, consumed (bytes from `start`), blank_lines, input_types, output_types,
/// output_resources, labels. A piece stops early after a bad line when `stop_at_event`, and after
/// a line that needed a part of the plan not exported yet when `stop_at_missing`.
#[pyfunction]
#[pyo3(signature = (plan, sessions, pieces, file = String::new(), folder = String::new(),
                    max_line_bytes = usize::MAX - 1, stop_at_event = false, stop_at_missing = true,
                    threads = 1))]
#[allow(clippy::too_many_arguments)]
fn process<'py>(
    py: Python<'py>,
    plan: &Bound<'py, PyPlan>,
    sessions: Vec<Bound<'py, PySession>>,
    pieces: Vec<(Bound<'py, PyBytes>, usize, usize)>,
    file: String,
    folder: String,
    max_line_bytes: usize,
    stop_at_event: bool,
    stop_at_missing: bool,
    threads: usize,
) -> PyResult<Bound<'py, PyList>> {
    if sessions.len() < pieces.len() {
        return Err(bad("one session per piece"));
    }
    let mut slices: Vec<&[u8]> = Vec::with_capacity(pieces.len());
    for (data, start, end) in &pieces {
        let bytes = data.as_bytes();
        slices.push(bytes.get(*start..*end).ok_or_else(|| bad("start or end is past the data"))?);
    }
    let plan = plan.get();
    let sessions: Vec<&std::sync::Mutex<walk::Session>> = sessions.iter().map(|s| &s.get().inner).collect();
    let context = walk::Context { file, folder };
    let options = block::Options { max_line_bytes, stop_at_event, stop_at_missing };
    let run = |slice: &[u8], session: &std::sync::Mutex<walk::Session>| -> Result<block::Block, &'static str> {
        let guard = plan.inner.read().map_err(|_| "the plan's lock is poisoned")?;
        let mut session = session.lock().map_err(|_| "the session's lock is poisoned")?;
        Ok(block::process(&guard, &mut session, &context, slice, &options))
    };
    let blocks: Vec<Result<block::Block, &str>> = py.allow_threads(|| {
        if threads <= 1 || slices.len() == 1 {
            return slices.iter().zip(&sessions).map(|(slice, session)| run(slice, session)).collect();
        }
        // the pieces shared out by a pool of `threads` threads that persist between calls
        use rayon::prelude::*;
        pool(threads).install(|| {
            slices.par_iter().zip(sessions.par_iter()).map(|(slice, session)| run(slice, session)).collect()
        })
    });
    let results = PyList::empty(py);
    for ((block, (_, start, _)), session) in blocks.into_iter().zip(&pieces).zip(&sessions) {
        let block = block.map_err(bad)?;
        results.append(block_result(py, block, *start, session)?)?;
    }
    Ok(results)
}

/// A piece handed to the pool: `wait` gives its result (as `process` gives one).
#[pyclass(frozen, name = "Ticket", module = "anonymizer._core")]
struct Ticket {
    done: std::sync::Arc<(std::sync::Mutex<Option<Result<block::Block, &'static str>>>, std::sync::Condvar)>,
    start: usize,
    // held until the result is taken: the piece's bytes and session stay alive meanwhile
    data: Py<PyBytes>,
    session: Py<PySession>,
}

#[pymethods]
impl Ticket {
    /// The piece's (out, events, counts), waiting (without the GIL) until it is done.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (lock, ready) = &*self.done;
        let block = py.allow_threads(|| {
            let mut slot = lock.lock().unwrap_or_else(|e| e.into_inner());
            while slot.is_none() {
                slot = ready.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            slot.take().unwrap_or(Err("the result was taken already"))
        });
        let _ = &self.data;
        block_result(py, block.map_err(bad)?, self.start, &self.session.get().inner)
    }
}

/// Hand the lines of `data[start:end]` to the pool of `threads` threads, to run with `session`
/// (one per piece in flight) while the caller goes on; `Ticket.wait` gives the result.
#[pyfunction]
#[pyo3(signature = (plan, session, data, start, end, file = String::new(), folder = String::new(),
                    max_line_bytes = usize::MAX - 1, stop_at_event = false, threads = 1))]
#[allow(clippy::too_many_arguments)]
fn submit(
    py: Python<'_>,
    plan: Py<PyPlan>,
    session: Py<PySession>,
    data: Py<PyBytes>,
    start: usize,
    end: usize,
    file: String,
    folder: String,
    max_line_bytes: usize,
    stop_at_event: bool,
    threads: usize,
) -> PyResult<Ticket> {
    let bytes = data.bind(py).as_bytes();
    let slice = bytes.get(start..end).ok_or_else(|| bad("start or end is past the data"))?;
    // The bytes object is immutable and the ticket holds it until the result is taken.
    let (pointer, length) = (slice.as_ptr() as usize, slice.len());
    let done = std::sync::Arc::new((std::sync::Mutex::new(None), std::sync::Condvar::new()));
    let ticket = Ticket { done: done.clone(), start, data, session: session.clone_ref(py) };
    let options = block::Options { max_line_bytes, stop_at_event, stop_at_missing: true };
    let context = walk::Context { file, folder };
    pool(threads.max(1)).spawn(move || {
        // SAFETY: see above; the slice is read only while the ticket (holding its bytes) lives,
        // and the ticket's `wait` cannot return before this task has stored its result.
        let slice = unsafe { std::slice::from_raw_parts(pointer as *const u8, length) };
        let result = (|| {
            let guard = plan.get().inner.read().map_err(|_| "the plan's lock is poisoned")?;
            let mut session = session.get().inner.lock().map_err(|_| "the session's lock is poisoned")?;
            Ok(block::process(&guard, &mut session, &context, slice, &options))
        })();
        let (lock, ready) = &*done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        ready.notify_all();
        drop(plan);
        drop(session);
    });
    Ok(ticket)
}

/// The pool of `threads` threads (made once per count).
fn pool(threads: usize) -> std::sync::Arc<rayon::ThreadPool> {
    static POOLS: std::sync::Mutex<Vec<(usize, std::sync::Arc<rayon::ThreadPool>)>> = std::sync::Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return pool.clone();
    }
    let pool = std::sync::Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("anonymizer-core-{i}"))
            .build()
            .expect("a thread pool"),
    );
    pools.push((threads, pool.clone()));
    pool
}

fn block_result<'py>(
    py: Python<'py>,
    block: block::Block,
    start: usize,
    session: &std::sync::Mutex<walk::Session>,
) -> PyResult<Bound<'py, PyTuple>> {
    let events = PyList::empty(py);
    for (index, event, line_start, line_end) in &block.events {
        let (kind, value) = match event {
            block::Event::Fallback { at, missing: false } => ("fallback", at.into_pyobject(py)?.into_any()),
            block::Event::Fallback { at, missing: true } => ("missing", at.into_pyobject(py)?.into_any()),
            block::Event::Fault(kind) => ("fault", kind.into_pyobject(py)?.into_any()),
            block::Event::Dropped(t) => ("dropped", t.into_pyobject(py)?.into_any()),
        };
        events.append((*index, kind, value, start + line_start, start + line_end))?;
    }
    let counts = PyDict::new(py);
    counts.set_item("lines", block.lines)?;
    counts.set_item("consumed", block.consumed)?;
    counts.set_item("blank_lines", block.blank_lines)?;
    counts.set_item("input_types", block.input_types.into_pyobject(py)?)?;
    counts.set_item("output_types", block.output_types.into_pyobject(py)?)?;
    counts.set_item("output_resources", block.output_resources)?;
    counts.set_item("labels", block.labels.into_pyobject(py)?)?;
    let out = PyBytes::new(py, &block.out);
    if let Ok(mut session) = session.lock() {
        session.spare = block.out; // its capacity serves the session's next piece
    }
    PyTuple::new(py, [out.into_any(), events.into_any(), counts.into_any()])
}

/// `jsonio.decimal_text(Decimal(text))` (for tests).
#[pyfunction]
fn decimal_text(text: &str) -> PyResult<String> {
    numbers::parse(text).map(|d| numbers::decimal_text(&d)).ok_or_else(|| bad("not a decimal"))
}

#[pymodule]
#[pyo3(name = "_core")]
fn fhir_anonymize_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_DEPTH", MAX_DEPTH)?;
    m.add_class::<PyPlan>()?;
    m.add_class::<PySession>()?;
    m.add_function(wrap_pyfunction!(process, m)?)?;
    m.add_function(wrap_pyfunction!(submit, m)?)?;
    m.add_class::<Ticket>()?;
    m.add_function(wrap_pyfunction!(decimal_text, m)?)?;
    Ok(())
}
