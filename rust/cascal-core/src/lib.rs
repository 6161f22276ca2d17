//! cascal-core: the data-sized kernels of the cascal router, in plain Rust (no Python).
//!
//! Modules:
//! - [`distance`]: pairwise cosine / euclidean / squared-euclidean distances (full and condensed),
//! - [`linkage`]: hierarchical agglomerative clustering (MST, NN-chain) and flat cuts,
//! - [`consensus`]: confidence-weighted consensus voting over a response matrix,
//! - [`niche`]: NaN-aware weighted cluster means and nearest-centroid search,
//! - [`routing`]: batched CASCAL routing of query embeddings,
//! - [`silhouette`]: one proficiency set's best flat cut by weighted silhouette (linkage + cuts),
//! - [`calibration`]: likelihood of labels under a temperature softmax (subject-temperature fit),
//! - [`fastexp`]: an `exp` that vectorises (consensus weights, routing weights),
//! - [`real`]: the element type [`Real`] (`f32` / `f64`) every kernel is generic over,
//! - [`alloc`]: fallible, size-checked allocation of data-sized buffers (out of memory is an
//!   error, never an abort),
//! - [`gemm_util`]: the single-threaded GEMM block the distance and routing kernels share,
//! - `shared_out`: the one raw-pointer helper (a buffer shared by parallel tasks that write
//!   scattered, disjoint entries), with its contract.
//!
//! Every public kernel validates its input and returns [`error::KernelError`] naming the argument.
//!
//! `unsafe` is kept to what safe Rust cannot express without a loss of speed: fallible zeroed
//! allocation ([`alloc`]), the GEMM call ([`gemm_util`]), AVX2 code paths picked at run time, and
//! the raw-pointer buffer of the sweeps whose tasks write scattered entries (`shared_out`, the only
//! raw-pointer helper). Every `unsafe` block and impl carries a `// SAFETY:` comment (enforced by
//! the lints below) and every `unsafe fn` a `# Safety` section.

#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc, unsafe_op_in_unsafe_fn)]

pub mod alloc;
pub mod calibration;
pub mod consensus;
pub mod distance;
pub mod error;
pub mod fastexp;
pub mod gemm_util;
pub mod linkage;
pub mod niche;
pub mod real;
pub mod routing;
pub mod silhouette;
mod shared_out;

pub use error::{ErrorKind, KResult, KernelError};
pub use real::Real;
