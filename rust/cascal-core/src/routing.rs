//! routing kernels (to be written).
