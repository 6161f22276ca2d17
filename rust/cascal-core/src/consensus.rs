//! consensus kernels (to be written).
